"""Runs in PostgreSQL: the record of each run, and the queue workers claim runs from.

A run is ``queued`` until a holder (a worker, or the process that asked to run it here) claims
it with ``FOR UPDATE SKIP LOCKED``; it is then ``running`` under a lease that the holder's
heartbeat renews. A run whose lease expired is claimable again. Each claim increments
``attempts``; ``(worker_id, attempts)`` is the fencing token checked by every later write of
that holder (:class:`Lease`), so a holder that lost its lease cannot write anything more.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from ..config import DEFAULT_TENANT
from ..db import Database
from ..errors import DatabaseError, InputError
from ..pipeline import ProposalRequest, ProposalResult, RunStatus, UsageTotals

__all__ = [
    "QUEUE_CHANNEL",
    "TERMINAL",
    "Lease",
    "NodeProgress",
    "RunRecord",
    "RunRegistry",
]

QUEUE_CHANNEL = "proposals_queue"
"""NOTIFY channel told when a run is queued (payload: run id); workers wake up on it."""

TERMINAL: frozenset[str] = frozenset(
    {"completed", "completed_with_errors", "stopped_budget", "cancelled", "failed"}
)
"""Statuses a run ends in; each is stored together with the run's ``run_finished`` event."""

_RESUMABLE = ("queued", "running", "cancelled", "failed")


class NodeProgress(BaseModel):
    """Progress of one graph node: batches (or items) in total, done, in flight, failed."""

    model_config = ConfigDict(frozen=True)

    total: int = 0
    done: int = 0
    in_flight: int = 0
    failed: int = 0


class RunRecord(BaseModel):
    """One run as stored: request, status, holder, progress, usage and (once ended) result."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str = DEFAULT_TENANT
    status: RunStatus
    request: ProposalRequest
    result: ProposalResult | None = None
    """The full result once the run ended (left out by :meth:`RunRegistry.list`)."""
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    """Holder of the run's lease (the last one, once the run ended)."""
    attempts: int = 0
    """How many times the run was claimed (more than one: it was resumed)."""
    last_seq: int = 0
    """Sequence number of its last stored event."""
    provider: str | None = None
    """The LLM endpoint that runs it, e.g. ``simulator tier1 at http://127.0.0.1:PORT/v1``."""
    simulated: bool = False
    """True when that endpoint is the offline simulator: the text is simulated."""
    usage: UsageTotals = Field(default_factory=UsageTotals)
    progress: dict[str, NodeProgress] = Field(default_factory=dict)
    cancel_requested: bool = False
    rerun_of: str | None = None
    """The run whose request this run runs again."""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to write a run's events and status: held by ``holder`` for claim ``attempt``."""

    run_id: str
    tenant: str
    holder: str
    attempt: int


_COLUMNS = (
    "id, tenant, status, request, {result} AS result, error, created_at, updated_at, started_at,"
    " finished_at, worker_id, attempts, last_seq, provider, simulated, usage, progress,"
    " cancel_requested, rerun_of"
)
_FULL = _COLUMNS.format(result="result")
_BRIEF = _COLUMNS.format(result="NULL::jsonb")


def _record(row: dict[str, Any]) -> RunRecord:
    data = {k: v for k, v in row.items() if v is not None}
    return RunRecord.model_validate(data)


class RunRegistry:
    """Create, look up, list, claim and renew runs. Every query names the tenant."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def _fetch(
        self, query: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> builtins.list[dict[str, Any]]:
        try:
            async with self.database.pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(query.encode(), params)
                rows = await cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise DatabaseError(f"could not access runs: {exc}") from exc
        return rows

    async def create(
        self,
        run_id: str,
        request: ProposalRequest,
        *,
        tenant: str = DEFAULT_TENANT,
        rerun_of: str | None = None,
        holder: str | None = None,
        lease_s: float = 30.0,
    ) -> tuple[RunRecord, Lease | None]:
        """Store a new run: ``queued`` (workers are told), or already held by ``holder``."""
        held = holder is not None
        query = (
            f"WITH new AS (INSERT INTO runs (id, tenant, status, request, rerun_of, worker_id,"
            " lease_until, attempts, started_at)"
            " VALUES (%(id)s, %(tenant)s, %(status)s, %(request)s, %(rerun_of)s, %(holder)s,"
            " CASE WHEN %(held)s THEN now() + make_interval(secs => %(lease)s) END,"
            " CASE WHEN %(held)s THEN 1 ELSE 0 END, CASE WHEN %(held)s THEN now() END)"
            f" RETURNING {_FULL})"
            " SELECT *, CASE WHEN NOT %(held)s THEN pg_notify(%(channel)s, id) END AS _n FROM new"
        )
        params = {
            "id": run_id,
            "tenant": tenant,
            "status": "running" if held else "queued",
            "request": request.model_dump_json(),
            "rerun_of": rerun_of,
            "holder": holder,
            "held": held,
            "lease": lease_s,
            "channel": QUEUE_CHANNEL,
        }
        try:
            rows = await self._fetch(query, params)
        except DatabaseError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise InputError(f"a run with id {run_id!r} already exists") from exc
            raise
        row = rows[0]
        row.pop("_n", None)
        record = _record(row)
        lease = Lease(run_id, tenant, holder, 1) if holder is not None else None
        return record, lease

    async def get(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunRecord | None:
        """The run with this id in ``tenant`` (``None``: any tenant), or ``None``."""
        if tenant is None:
            rows = await self._fetch(f"SELECT {_FULL} FROM runs WHERE id = %s", (run_id,))
        else:
            rows = await self._fetch(
                f"SELECT {_FULL} FROM runs WHERE id = %s AND tenant = %s", (run_id, tenant)
            )
        return _record(rows[0]) if rows else None

    # ``list`` is a method name here, so annotations in the class body say ``builtins.list``.
    async def list(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        status: RunStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        with_result: bool = False,
    ) -> builtins.list[RunRecord]:
        """A tenant's runs, newest first, without their results unless ``with_result``."""
        query = f"SELECT {_FULL if with_result else _BRIEF} FROM runs WHERE tenant = %s"
        params: builtins.list[Any] = [tenant]
        if status is not None:
            query += " AND status = %s"
            params.append(status)
        query += " ORDER BY created_at DESC, id LIMIT %s OFFSET %s"
        params += [limit, offset]
        return [_record(r) for r in await self._fetch(query, params)]

    async def claim(
        self, holder: str, *, lease_s: float, run_id: str | None = None
    ) -> tuple[RunRecord, Lease] | None:
        """Take the oldest claimable run (or ``run_id`` if claimable) for ``holder``.

        Claimable: ``queued``, or ``running`` with an expired lease. Concurrent claimers skip
        each other's locked rows, so each run goes to exactly one of them.
        """
        where = "(status = 'queued' OR (status = 'running' AND lease_until < now()))"
        params: dict[str, Any] = {"holder": holder, "lease": lease_s}
        if run_id is not None:
            where += " AND id = %(run_id)s"
            params["run_id"] = run_id
        query = (
            f"WITH next AS (SELECT id FROM runs WHERE {where} ORDER BY created_at, id"
            " LIMIT 1 FOR UPDATE SKIP LOCKED)"
            " UPDATE runs r SET status = 'running', worker_id = %(holder)s,"
            " lease_until = now() + make_interval(secs => %(lease)s),"
            " attempts = r.attempts + 1, started_at = COALESCE(r.started_at, now()),"
            " updated_at = now()"
            f" FROM next WHERE r.id = next.id RETURNING {_FULL.replace('id,', 'r.id,', 1)}"
        )
        rows = await self._fetch(query, params)
        if not rows:
            return None
        record = _record(rows[0])
        return record, Lease(record.id, record.tenant, holder, record.attempts)

    async def renew(self, leases: Sequence[Lease], *, lease_s: float) -> dict[str, bool]:
        """Extend the leases still held; ``{run_id: cancel_requested}`` for each of them.

        A run missing from the answer is no longer this holder's (claimed again elsewhere,
        or ended).
        """
        if not leases:
            return {}
        rows = await self._fetch(
            "UPDATE runs r SET lease_until = now() + make_interval(secs => %s)"
            " FROM unnest(%s::text[], %s::text[], %s::int[]) AS l(id, holder, attempt)"
            " WHERE r.id = l.id AND r.worker_id = l.holder AND r.attempts = l.attempt"
            " AND r.status = 'running' RETURNING r.id, r.cancel_requested",
            (
                lease_s,
                [le.run_id for le in leases],
                [le.holder for le in leases],
                [le.attempt for le in leases],
            ),
        )
        return {r["id"]: r["cancel_requested"] for r in rows}

    async def mark_started(self, lease: Lease, *, provider: str, simulated: bool) -> None:
        """Record which endpoint the holder runs the run on."""
        await self._fetch(
            "UPDATE runs SET provider = %s, simulated = %s, updated_at = now()"
            " WHERE id = %s AND worker_id = %s AND attempts = %s",
            (provider, simulated, lease.run_id, lease.holder, lease.attempt),
        )

    async def release(self, lease: Lease) -> bool:
        """Give a held run back to the queue at once (a worker shutting down)."""
        rows = await self._fetch(
            "UPDATE runs SET status = 'queued', lease_until = NULL, updated_at = now()"
            " WHERE id = %s AND worker_id = %s AND attempts = %s AND status = 'running'"
            " RETURNING pg_notify(%s, id)",
            (lease.run_id, lease.holder, lease.attempt, QUEUE_CHANNEL),
        )
        return bool(rows)

    async def requeue(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> RunRecord | None:
        """Put an unfinished, cancelled or failed run back in the queue to be resumed.

        A run ``running`` under a live lease is left alone (returned as it is).
        """
        rows = await self._fetch(
            "UPDATE runs SET status = 'queued', lease_until = NULL, cancel_requested = false,"
            " error = NULL, finished_at = NULL, updated_at = now()"
            " WHERE id = %s AND tenant = %s AND (status IN ('queued', 'cancelled', 'failed')"
            " OR (status = 'running' AND lease_until < now()))"
            " RETURNING pg_notify(%s, id)",
            (run_id, tenant, QUEUE_CHANNEL),
        )
        record = await self.get(run_id, tenant=tenant)
        if record is None:
            return None
        if not rows and record.status not in _RESUMABLE:
            raise InputError(
                f"run {run_id} already ended {record.status}; "
                "run its request again as a new run instead (rerun)"
            )
        return record

    async def request_cancel(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        """Flag a running run for cancellation (its holder acts on it); False if not running."""
        rows = await self._fetch(
            "UPDATE runs SET cancel_requested = true, updated_at = now()"
            " WHERE id = %s AND tenant = %s AND status = 'running' RETURNING id",
            (run_id, tenant),
        )
        return bool(rows)
