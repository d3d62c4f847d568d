"""The embedded PostgreSQL (``pgserver``) in the data folder, and its lifecycle.

Every process that opens the database without a URL is a *user* of the server: its pid is on
the cluster's list of users (``pgdata/.handle_pids.json``, kept by ``pgserver``). The first
user starts the server; the last live user stops it when it closes its last
:class:`~proposals.db.Database` (or exits). A process that died without closing (``kill -9``)
stays on the list, so dead pids are dropped whenever a process opens, closes or inspects the
cluster: a dead user never keeps the server running nor blocks a stop.
``proposals db status`` shows the server and its users; ``proposals db stop`` stops it.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..errors import DatabaseError, InputError

__all__ = [
    "EMBEDDED_DB",
    "EmbeddedStatus",
    "acquire_embedded",
    "embedded_status",
    "release_embedded",
    "stop_embedded",
]

EMBEDDED_DB = "proposals"
_USERS_FILE = ".handle_pids.json"
# Databases this process has open per cluster: the last close releases the server.
_open: dict[Path, int] = {}
_open_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class EmbeddedStatus:
    """The embedded server of one data folder, as ``proposals db status`` shows it."""

    pgdata: Path
    initialised: bool
    """A cluster exists in the folder."""
    running: bool
    pid: int | None = None
    """The postmaster's pid when running."""
    socket_dir: str | None = None
    users: list[int] = field(default_factory=list)
    """Live processes using the server."""
    dropped: list[int] = field(default_factory=list)
    """Pids of dead users dropped from the list by this look."""


def _lock() -> Any:
    """pgserver's own inter-process lock, which guards the list of users."""
    from pgserver import PostgresServer

    return PostgresServer._lock


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _prune(pgdata: Path, *, keep_only: int | None = None) -> tuple[list[int], list[int]]:
    """Drop dead pids from the list of users (caller holds the lock): (live, dropped).
    ``keep_only`` replaces the list with that one pid (a forced stop)."""
    path = pgdata / _USERS_FILE
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        pids = []
    live = [p for p in pids if _alive(p)]
    dropped = [p for p in pids if p not in live]
    if keep_only is not None:
        path.write_text(json.dumps([keep_only]))
    elif dropped:
        path.write_text(json.dumps(live))
    return live, dropped


def _postmaster(pgdata: Path) -> Any:
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info if info is not None and info.is_running() else None


def acquire_embedded(pgdata: Path) -> tuple[Any, str]:
    """Start (or attach to) the server in ``pgdata`` as a user; blocking (run in a thread).
    Returns the server handle and the URL of the project's database on it."""
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DatabaseError(
            "no PROPOSALS_DATABASE_URL is set and the 'pgserver' package is missing"
        ) from exc
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        if (pgdata / _USERS_FILE).exists():
            with _lock():
                _prune(pgdata)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {EMBEDDED_DB};")
    except Exception as exc:
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            "Set PROPOSALS_DATABASE_URL to use another server."
        ) from exc
    with _open_lock:
        _open[pgdata] = _open.get(pgdata, 0) + 1
    return server, server.get_uri(EMBEDDED_DB)


def release_embedded(server: Any) -> None:
    """One database of this process on ``server`` is closed; after the last one, this
    process stops being a user, and the server stops if no other live process uses it."""
    pgdata = Path(server.pgdata)
    with _open_lock:
        left = _open.get(pgdata, 1) - 1
        if left > 0:
            _open[pgdata] = left
            return
        _open.pop(pgdata, None)
    with _lock():
        _prune(pgdata)
    server.cleanup()


def embedded_status(pgdata: Path) -> EmbeddedStatus:
    """The server in ``pgdata`` and its live users (dead ones are dropped on the way)."""
    pgdata = pgdata.expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return EmbeddedStatus(pgdata, initialised=False, running=False)
    with _lock():
        live, dropped = _prune(pgdata)
    info = _postmaster(pgdata)
    return EmbeddedStatus(
        pgdata,
        initialised=True,
        running=info is not None,
        pid=info.pid if info is not None else None,
        socket_dir=str(info.socket_dir) if info is not None and info.socket_dir else None,
        users=live if info is not None else [],
        dropped=dropped,
    )


def stop_embedded(pgdata: Path, *, force: bool = False) -> EmbeddedStatus:
    """Stop the server in ``pgdata`` and return its status from before.

    Refused with :class:`InputError` while another live process uses it, unless ``force``
    (those processes then lose their connections).
    """
    status = embedded_status(pgdata)
    if not status.running:
        return status
    others = [p for p in status.users if p != os.getpid()]
    if others and not force:
        raise InputError(
            f"the embedded PostgreSQL in {status.pgdata} is in use by process "
            f"{', '.join(map(str, others))}; let it finish, or use --force"
        )
    server, _ = acquire_embedded(status.pgdata)
    with _lock():
        _prune(status.pgdata, keep_only=os.getpid())
    with _open_lock:
        _open.pop(status.pgdata, None)
    server.cleanup()
    return status
