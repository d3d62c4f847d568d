"""The event log of runs in PostgreSQL: fenced appends, terminal writes, replay from any seq.

Events are stored before anyone sees them. Each append is one transaction that checks the
writer's lease (see :class:`~proposals.runs._store.Lease`), inserts the events, updates the
run's ``last_seq``, usage and progress, and sends ``NOTIFY`` (payload ``"<run id> <seq>"``) on
:data:`EVENTS_CHANNEL`, delivered to listeners in every process when it commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ..config import DEFAULT_TENANT
from ..db import Database
from ..errors import DatabaseError, RuntimeFailure
from ..pipeline import ProposalResult, RunStatus, UsageTotals
from ._events import RunEvent, RunFinished, parse_event
from ._store import Lease, NodeProgress

__all__ = ["EVENTS_CHANNEL", "EventLog", "LeaseLost"]

EVENTS_CHANNEL = "proposals_events"


class LeaseLost(RuntimeFailure):
    """This process no longer holds the run: another holder claimed it after the lease expired."""


def _progress_json(progress: Mapping[str, NodeProgress]) -> str:
    return json.dumps({k: v.model_dump() for k, v in progress.items()})


class EventLog:
    """Append-only event log per run, read back from any sequence number."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def append(
        self,
        lease: Lease,
        events: Sequence[RunEvent],
        *,
        usage: UsageTotals,
        progress: Mapping[str, NodeProgress],
        final: tuple[RunStatus, ProposalResult | None, str | None] | None = None,
    ) -> bool:
        """Store numbered events under ``lease`` (with the run's final status when ``final``).

        Returns whether a cancellation of the run was requested. Raises :class:`LeaseLost`
        when the lease is no longer held (nothing is written then).
        """
        if not events and final is None:
            return False
        last = events[-1].seq if events else None
        try:
            async with self.database.pool.connection() as conn, conn.transaction():
                if final is None:
                    cur = await conn.execute(
                        "UPDATE runs SET last_seq = COALESCE(%s, last_seq), usage = %s,"
                        " progress = %s, updated_at = now()"
                        " WHERE id = %s AND worker_id = %s AND attempts = %s"
                        " AND status = 'running' RETURNING cancel_requested",
                        (
                            last,
                            usage.model_dump_json(),
                            _progress_json(progress),
                            lease.run_id,
                            lease.holder,
                            lease.attempt,
                        ),
                    )
                else:
                    status, result, error = final
                    cur = await conn.execute(
                        "UPDATE runs SET last_seq = COALESCE(%s, last_seq), usage = %s,"
                        " progress = %s, status = %s, result = COALESCE(%s, result),"
                        " error = %s, finished_at = now(), lease_until = NULL,"
                        " cancel_requested = false, updated_at = now()"
                        " WHERE id = %s AND worker_id = %s AND attempts = %s"
                        " AND status = 'running' RETURNING cancel_requested",
                        (
                            last,
                            usage.model_dump_json(),
                            _progress_json(progress),
                            status,
                            result.model_dump_json() if result else None,
                            error,
                            lease.run_id,
                            lease.holder,
                            lease.attempt,
                        ),
                    )
                row = await cur.fetchone()
                if row is None:
                    raise LeaseLost(f"run {lease.run_id} is no longer held by {lease.holder}")
                await self._insert(conn, lease.tenant, events)
        except psycopg.Error as exc:
            raise DatabaseError(f"could not store events of run {lease.run_id}: {exc}") from exc
        return bool(row[0])

    async def end_unheld(self, run_id: str, tenant: str, event: RunFinished, *, where: str) -> bool:
        """End a run nobody holds (queued, or its lease expired) with ``event``'s status.

        ``where`` is extra SQL on the run's row. The event's seq must be the run's
        ``last_seq + 1``; False (nothing written) if the row changed meanwhile.
        """
        try:
            async with self.database.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    (
                        "UPDATE runs SET status = %s, error = %s, last_seq = %s,"
                        " finished_at = now(), lease_until = NULL, cancel_requested = false,"
                        " updated_at = now() WHERE id = %s AND tenant = %s AND last_seq = %s"
                        f" AND ({where}) RETURNING id"
                    ).encode(),
                    (event.status, event.error, event.seq, run_id, tenant, event.seq - 1),
                )
                if await cur.fetchone() is None:
                    return False
                await self._insert(conn, tenant, [event])
        except psycopg.Error as exc:
            raise DatabaseError(f"could not end run {run_id}: {exc}") from exc
        return True

    @staticmethod
    async def _insert(
        conn: psycopg.AsyncConnection[Any], tenant: str, events: Sequence[RunEvent]
    ) -> None:
        if not events:
            return
        # One statement, not ``executemany``: that runs in a pipeline, which psycopg leaves
        # half-open when the writing task is cancelled (see ``db.discard_pipelined``).
        await conn.execute(
            "INSERT INTO run_events (run_id, tenant, seq, type, data, at)"
            " SELECT e.run_id, %s, e.seq, e.type, e.data, e.at FROM unnest("
            "%s::text[], %s::int[], %s::text[], %s::jsonb[], %s::timestamptz[])"
            " AS e(run_id, seq, type, data, at)",
            (
                tenant,
                [e.run_id for e in events],
                [e.seq for e in events],
                [e.type for e in events],
                [e.model_dump_json() for e in events],
                [e.at for e in events],
            ),
        )
        await conn.execute(
            "SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, f"{events[-1].run_id} {events[-1].seq}")
        )

    async def read(
        self,
        run_id: str,
        after: int = 0,
        limit: int | None = None,
        *,
        tenant: str | None = DEFAULT_TENANT,
    ) -> list[RunEvent]:
        """Events of ``run_id`` with ``seq > after``, in order (``tenant=None``: any tenant)."""
        query = "SELECT data FROM run_events WHERE run_id = %s AND seq > %s"
        params: list[Any] = [run_id, after]
        if tenant is not None:
            query += " AND tenant = %s"
            params.append(tenant)
        query += " ORDER BY seq"
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
        try:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT COALESCE(max(seq), 0) FROM run_events WHERE run_id = %s", (run_id,)
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"could not read run events: {exc}") from exc
        return int(row[0]) if row else 0
