"""Retry policy: which failures are retried, how long to wait, and what they teach.

The ``openai`` SDK's exceptions are classified here, at the boundary, into a :class:`Failure`
that the rest of the gateway works with; they never leave the package untranslated.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

__all__ = ["Failure", "RetryPolicy", "classify", "parse_retry_after"]

_OVERFLOW = re.compile(
    r"maximum context length|context[_ ]length[_ ]exceeded|context window|too many tokens",
    re.IGNORECASE,
)

Kind = Literal["retry", "fatal", "overflow"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, classified."""

    kind: Kind
    reason: str
    """Short cause used in stats and events: ``rate_limit``, ``connection``, ``timeout``…"""
    message: str
    status: int | None = None
    code: str | None = None
    retry_after: float | None = None
    """Seconds the provider asked us to wait, if it said."""
    overload: bool = False
    """The provider is pushing back: cut the concurrency limit."""
    capacity: bool = False
    """A capacity signal (refused/reset connection, timeout) that teaches a ceiling."""
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _status_failure(exc: openai.APIStatusError) -> Failure:
    status = exc.status_code
    code = exc.code
    headers = {k.lower(): v for k, v in exc.response.headers.items()}
    message = exc.message
    retry_after = parse_retry_after(headers)
    common: dict[str, Any] = {
        "message": message,
        "status": status,
        "code": code,
        "headers": headers,
    }
    if status == 429:
        if code == "insufficient_quota" or exc.type == "insufficient_quota":
            return Failure("fatal", "insufficient_quota", **common)
        return Failure("retry", "rate_limit", retry_after=retry_after, overload=True, **common)
    if status == 400 and (code == "context_length_exceeded" or _OVERFLOW.search(message or "")):
        return Failure("overflow", "context_overflow", **common)
    if status == 408:
        return Failure("retry", "request_timeout", retry_after=retry_after, **common)
    if status == 409:
        return Failure("retry", "conflict", retry_after=retry_after, **common)
    if status >= 500:
        overload = status == 503
        return Failure(
            "retry", f"server_error_{status}", retry_after=retry_after, overload=overload, **common
        )
    reasons = {
        400: "bad_request",
        401: "authentication",
        403: "permission_denied",
        404: "not_found",
        422: "unprocessable",
    }
    return Failure("fatal", reasons.get(status, f"http_{status}"), **common)


def classify(exc: BaseException) -> Failure | None:
    """Classify an exception raised by one attempt; ``None`` if it is not a provider failure."""
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return Failure(
            "retry", "timeout", str(exc) or "deadline exceeded", overload=True, capacity=True
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause else exc.message
        return Failure("retry", "connection", detail, overload=True, capacity=True)
    if isinstance(exc, openai.APIStatusError):
        return _status_failure(exc)
    if isinstance(exc, openai.APIResponseValidationError):
        return Failure("fatal", "invalid_response", exc.message, status=exc.status_code)
    if isinstance(exc, openai.OpenAIError):
        return Failure("fatal", "client_error", str(exc))
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Jittered exponential backoff that honours the provider's ``retry-after``."""

    max_retries: int = 6
    base_s: float = 0.25
    max_s: float = 8.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, failure: Failure, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        draw = (rng or random).random
        if failure.retry_after is not None:
            wait = min(failure.retry_after, self.max_retry_after_s)
            # Never earlier than asked; a little later, spread, so waiters do not stampede.
            return wait * (1.0 + 0.2 * draw()) + 0.05 * self.base_s * draw()
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return ceiling / 2 + draw() * ceiling / 2
