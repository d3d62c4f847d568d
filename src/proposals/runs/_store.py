"""Runs and their event log in PostgreSQL (tables from migration 0003)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict

from ..db import Database
from ..errors import DatabaseError, InputError
from ..pipeline import ProposalRequest, ProposalResult, RunStatus
from ._events import RunEvent, parse_event

__all__ = ["EventLog", "RunRecord", "RunRegistry"]


class RunRecord(BaseModel):
    """One run as stored: its request, status and (when finished) result."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: RunStatus
    request: ProposalRequest
    result: ProposalResult | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class RunRegistry:
    """Create, update and look up runs."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(self, run_id: str, request: ProposalRequest) -> None:
        """Record a new pending run; an existing id is an :class:`InputError`."""
        try:
            async with self.database.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO runs (id, status, request) VALUES (%s, 'pending', %s)",
                    (run_id, request.model_dump_json()),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise InputError(f"a run with id {run_id!r} already exists") from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"could not record run {run_id}: {exc}") from exc

    async def set_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        result: ProposalResult | None = None,
        error: str | None = None,
    ) -> None:
        """Move a run to ``status``, storing its result or error when given."""
        try:
            async with self.database.pool.connection() as conn:
                await conn.execute(
                    "UPDATE runs SET status = %s, result = COALESCE(%s, result), error = %s,"
                    " updated_at = now() WHERE id = %s",
                    (status, result.model_dump_json() if result else None, error, run_id),
                )
        except psycopg.Error as exc:
            raise DatabaseError(f"could not update run {run_id}: {exc}") from exc

    async def get(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""
        rows = await self._select("WHERE id = %s", (run_id,))
        return rows[0] if rows else None

    # ``list`` is a method name here, so annotations in the class body say ``builtins.list``.
    async def list(self, limit: int = 50) -> builtins.list[RunRecord]:
        """The most recent runs, newest first."""
        return await self._select("ORDER BY created_at DESC LIMIT %s", (limit,))

    async def _select(self, tail: str, params: Sequence[Any]) -> builtins.list[RunRecord]:
        query = (
            "SELECT id, status, request, result, error, created_at, updated_at FROM runs " + tail
        )
        try:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(query.encode(), params)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise DatabaseError(f"could not read runs: {exc}") from exc
        return [
            RunRecord(
                id=r[0],
                status=r[1],
                request=r[2],
                result=r[3],
                error=r[4],
                created_at=r[5],
                updated_at=r[6],
            )
            for r in rows
        ]


class EventLog:
    """Append-only event log per run, read back from any sequence number."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def append(self, events: Sequence[RunEvent]) -> None:
        """Store events (already numbered); a repeated (run, seq) is ignored."""
        if not events:
            return
        rows = [(e.run_id, e.seq, e.type, e.model_dump_json(), e.at) for e in events]
        try:
            async with self.database.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO run_events (run_id, seq, type, data, at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    rows,
                )
        except psycopg.Error as exc:
            raise DatabaseError(f"could not store run events: {exc}") from exc

    async def read(self, run_id: str, after: int = 0, limit: int | None = None) -> list[RunEvent]:
        """Events of ``run_id`` with ``seq > after``, in order."""
        query = "SELECT data FROM run_events WHERE run_id = %s AND seq > %s ORDER BY seq"
        params: list[Any] = [run_id, after]
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        try:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(query.encode(), params)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise DatabaseError(f"could not read run events: {exc}") from exc
        return [parse_event(r[0] if isinstance(r[0], dict) else json.loads(r[0])) for r in rows]

    async def last_seq(self, run_id: str) -> int:
        """The highest sequence number stored for ``run_id`` (0 when none)."""
        async with self.database.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT COALESCE(max(seq), 0) FROM run_events WHERE run_id = %s", (run_id,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0
