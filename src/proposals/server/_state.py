"""What the server's request handlers share: opened once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection

from ..config import Settings
from ..db import Database
from ..embeddings import Embedder
from ..keys import ApiKeys
from ..store import Store

__all__ = ["ServerOptions", "ServerState", "state_of"]


@dataclass(frozen=True)
class ServerOptions:
    """How one server process behaves (the ``proposals serve`` flags)."""

    auth: bool = True
    """False: every request is the local tenant, no key asked (only allowed on loopback)."""
    workers: int = 1
    """In-process workers executing queued runs; 0 serves only (runs go to other workers)."""
    slots: int = 4
    """Runs each in-process worker executes at once."""
    max_upload_bytes: int = 50 * 1024 * 1024
    heartbeat_s: float = 10.0
    """Seconds between ``: heartbeat`` comments on an idle SSE stream (at most 15)."""
    service_options: dict[str, Any] = field(default_factory=dict)
    """Passed to :func:`proposals.runs.open_services` (tests: simulator overrides)."""


@dataclass
class ServerState:
    """The open services of one server process."""

    settings: Settings
    options: ServerOptions
    database: Database
    embedder: Embedder
    keys: ApiKeys
    store: Store
    """The chunk store (local tenant's view; handlers use ``store.for_tenant(tenant)``)."""
    uploads: Path
    """Folder of uploaded files, one sub-folder per tenant (kept: they are the sources)."""
    services: Any = None
    """The run services (database, store, gateway...), when runs are enabled."""
    manager: Any = None
    """The :class:`proposals.runs.RunManager` of this process."""


def state_of(conn: HTTPConnection | Request) -> ServerState:
    """The server state from a request or WebSocket."""
    state: ServerState = conn.app.state.server
    return state
