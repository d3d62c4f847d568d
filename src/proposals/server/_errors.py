"""HTTP status codes for the project's errors (they live only here), and the 413 limit.

``NotFound`` → 404 (another tenant's id too), other user mistakes → 422 naming the field when
known, ``EmbeddingModelMismatch`` → 409, database trouble → 503, other runtime failures → 500.
Every answer is ``{"detail": ...}`` in FastAPI's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    DatabaseError,
    EmbeddingModelMismatch,
    InputError,
    NotFound,
    ProposalsError,
    UserError,
)

__all__ = ["BodyLimit", "checked_field", "field_error", "install_error_handlers"]

log = logging.getLogger(__name__)


def field_error(
    loc: tuple[str | int, ...], message: str, value: Any = None
) -> RequestValidationError:
    """A 422 naming one field, in the shape FastAPI uses for its own validation errors."""
    return RequestValidationError(
        [{"type": "value_error", "loc": loc, "msg": message, "input": value}]
    )


def checked_field(
    where: str, name: str, value: Any, check: Callable[[Any], str | None]
) -> str | None:
    """``value`` normalised by ``check``; its InputError becomes a 422 naming the field."""
    try:
        return check(value)
    except InputError as exc:
        raise field_error((where, name), str(exc), value) from exc


async def _proposals_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, NotFound):
        code = 404
    elif isinstance(exc, EmbeddingModelMismatch):
        code = 409
    elif isinstance(exc, UserError):
        code = 422
    elif isinstance(exc, DatabaseError):
        code = 503
    else:
        code = 500
        log.error("request %s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=code)


def install_error_handlers(app: FastAPI) -> None:
    """Translate :class:`ProposalsError` into HTTP answers."""
    app.add_exception_handler(ProposalsError, _proposals_error)


class _TooLarge(HTTPException):
    """Raised from inside the body stream; an HTTPException so that FastAPI's body parsing
    passes it on as it is (it turns other errors into 400) and answers 413."""

    def __init__(self, max_bytes: int) -> None:
        limit = max_bytes / (1024 * 1024)
        super().__init__(
            413, f"request body over the {limit:g} MiB limit (PROPOSALS_MAX_UPLOAD_MB)"
        )


class BodyLimit:
    """Answer 413 to a request body over ``max_bytes``: at once from ``Content-Length``, or
    as soon as a streamed (chunked) body passes the limit, before the app has stored it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            # No body to limit (and event streams skip a layer on every write).
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= _DRAIN_MAX_BYTES:
                await _drain(receive)
            await self._reject(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": _TooLarge(self.max_bytes).detail},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response({"type": "http"}, _nothing, send)


_DRAIN_MAX_BYTES = 16 * 1024 * 1024
"""A body declared over the limit but under this is read and discarded before the 413: a
client sends its whole body before it reads the answer, and a connection closed on unread
data is reset, so it would see a broken connection instead of the 413. Larger bodies are
refused at once (that client gets the reset)."""


async def _drain(receive: Receive) -> None:
    """Read and drop the request body."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
