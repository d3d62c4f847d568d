"""Who is calling: ``Authorization: Bearer KEY`` to a tenant, or the local tenant when the
server runs without auth (allowed on loopback only)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import DEFAULT_TENANT
from ._state import state_of

__all__ = ["Tenant", "is_loopback", "tenant_of", "websocket_tenant"]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `proposals keys create --tenant NAME`.",
)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def tenant_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's tenant; 401 without a valid key (unless auth is off)."""
    state = state_of(request)
    if not state.options.auth:
        return DEFAULT_TENANT
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing API key: send 'Authorization: Bearer KEY'")
    tenant = await state.keys.verify(credentials.credentials)
    if tenant is None:
        raise _unauthorized("invalid or revoked API key")
    return tenant


Tenant = Annotated[str, Depends(tenant_of)]
"""A handler parameter that is the authenticated caller's tenant."""


async def websocket_tenant(websocket: WebSocket) -> str | None:
    """The tenant of a WebSocket: key in ``?token=`` or the Authorization header; None when
    missing or invalid (the caller closes with 4401)."""
    state = state_of(websocket)
    if not state.options.auth:
        return DEFAULT_TENANT
    key = websocket.query_params.get("token")
    if not key:
        scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
        key = value if scheme.lower() == "bearer" else ""
    if not key:
        return None
    return await state.keys.verify(key)
