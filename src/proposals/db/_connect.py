"""Open the database: embedded (pgserver) or by URL, check pgvector, migrate, pool."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Self

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from ..config import Settings
from ..errors import DatabaseError
from ._embedded import acquire_embedded, release_embedded
from ._migrate import migrate

log = logging.getLogger(__name__)


def _describe(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    host = info.get("host") or "localhost"
    return f"{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"


async def _configure(conn: psycopg.AsyncConnection) -> None:
    await register_vector_async(conn)


async def discard_pipelined(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool ``reset``: refuse a connection returned still in pipeline mode (it is closed).

    psycopg (3.3) leaves a connection in pipeline mode when its task is cancelled while
    entering or leaving a pipeline (``conn.pipeline()``, a transaction inside one,
    ``executemany``). Reused like that, the next borrower's queries are queued in the stale
    pipeline: ``execute`` returns before any result, so a lookup reads no row.
    """
    if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        raise psycopg.InterfaceError("connection returned to the pool in pipeline mode")


class Database:
    """A connection pool to the project's PostgreSQL, migrated and ready.

    Use ``await Database.open(settings)`` (also an ``async with`` context) to get one.
    """

    def __init__(self, url: str, pool: AsyncConnectionPool, server: Any = None) -> None:
        self.url = url
        self.pool = pool
        self._server = server

    @property
    def embedded(self) -> bool:
        """True when this process started (or attached to) the private server."""
        return self._server is not None

    @classmethod
    async def open(cls, settings: Settings) -> Self:
        server = None
        url: str
        if settings.database_url:
            url = settings.database_url
        else:
            server, url = await asyncio.to_thread(acquire_embedded, settings.data_dir / "pg")
        await _prepare(url)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=settings.db_pool_max,
            open=False,
            configure=_configure,
            reset=discard_pipelined,
            timeout=30,
            name="proposals",
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:
            raise DatabaseError(f"could not open a pool to {_describe(url)}: {exc}") from exc
        return cls(url, pool, server)

    async def close(self) -> None:
        """Close the pool; an embedded server is released (stopped if no one else uses it)."""
        await self.pool.close()
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(release_embedded, server)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _prepare(url: str) -> None:
    """Connect once: fail clearly if unreachable or without pgvector, then migrate."""
    where = _describe(url)
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {where}: {str(exc).strip()}. "
            "Check PROPOSALS_DATABASE_URL, or unset it to use the embedded server."
        ) from exc
    async with conn:
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"PostgreSQL at {where} lacks the pgvector extension ({str(exc).strip()}). "
                "Install pgvector on that server, or unset PROPOSALS_DATABASE_URL to use "
                "the embedded server that bundles it."
            ) from exc
        await migrate(conn)
