"""One provider budget shared by every process that calls the same endpoint, through PostgreSQL.

Each gateway of each process (workers on any host, a Ray ingest's actors) holds a *lease* on
the endpoint's budget (``provider_shares``), renewed by a heartbeat every ``heartbeat_s``. The
endpoint's figures live in one row (``provider_budgets``) that every process adapts together:

* **Concurrency.** The endpoint's limit is split among the live leases by weight (1 for a
  process with calls waiting or in flight, 0.1 for an idle one). A process only ever takes
  slots that no other lease holds, under the budget row's lock, and gives back what it holds
  above its share as its calls finish: the grants never add up to more than the limit, so the
  processes together never admit more calls than one gateway alone would.
* **Adaptation on the shared figure.** A 429, a refused or reset connection or a timeout cuts
  the endpoint's limit by ``decrease_factor``, once per episode for all processes (the cut is
  conditional on the generation the failing call started in). A refused connection also
  teaches the ceiling: this process's other calls in flight plus every other process's grant
  (as of its last heartbeat). Successes of a process that uses its grant grow the shared limit at
  its heartbeat: +1 each before the first cut and below the ceiling, else +1 per limit's
  worth (per ``probe_windows`` limits' worth above the ceiling).
* **Rates.** RPM/TPM (configured, the endpoint's total; or learned from ``x-ratelimit-*``
  headers, which describe the endpoint) are shared by the same weights: each process paces
  its :class:`RateBudget` at its fraction (``set_share``).
* **Leases, not counters.** A process that dies stops renewing; once its lease has expired
  the next heartbeat of any other process deletes it, and its slots and rate are free again.

:class:`SharedLimiter` is what the gateway's attempt loop sees: the same admission and
feedback calls as :class:`AdaptiveLimiter`, answered from this process's grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..db import Database
from ._config import GatewayConfig
from ._limiter import AdaptiveLimiter, LimiterTicket
from ._ratelimit import RateBudget

__all__ = ["ShareSettings", "SharedBudget", "SharedLimiter", "share_settings"]

log = logging.getLogger(__name__)

_IDLE_WEIGHT = 0.1


@dataclass(frozen=True, slots=True)
class ShareSettings:
    """How one endpoint's budget is shared."""

    endpoint: str
    """What identifies the endpoint's quota (its base URL)."""
    start: int = 16
    minimum: int = 1
    maximum: int = 1024
    decrease_factor: float = 0.7
    ceiling_margin: float = 0.95
    probe_windows: float = 8.0
    rpm: int | None = None
    """The endpoint's configured total (all processes together)."""
    tpm: int | None = None
    heartbeat_s: float = 1.0
    lease_s: float = 6.0
    """A process that has not renewed its lease for this long is taken for dead."""


def share_settings(config: GatewayConfig, *, lease_s: float = 6.0) -> ShareSettings:
    """The sharing settings of a gateway's endpoint (its limits are the endpoint's totals)."""
    endpoint = config.azure_endpoint or config.base_url or "https://api.openai.com/v1"
    return ShareSettings(
        endpoint=endpoint.rstrip("/"),
        start=config.start_limit,
        minimum=config.concurrency_min,
        maximum=config.concurrency_max,
        decrease_factor=config.decrease_factor,
        # Lower than one gateway's: without keep-alive every call opens a connection, and the
        # provider may still count the one a call just closed when the next one opens.
        ceiling_margin=max(0.1, config.ceiling_margin - 0.1),
        rpm=config.rpm,
        tpm=config.tpm,
        heartbeat_s=max(0.2, min(2.0, lease_s / 6)),
        lease_s=lease_s,
    )


class SharedLimiter(AdaptiveLimiter):
    """The concurrency side of a :class:`SharedBudget`: the gateway's attempt loop uses it as
    its :class:`AdaptiveLimiter` (the same FIFO admission and feedback calls), but the limit is
    this process's grant, and successes and push-back go to the shared figures instead of
    adapting a limit of its own."""

    def __init__(self, budget: SharedBudget) -> None:
        super().__init__(minimum=1, maximum=budget.settings.maximum, start=1, slow_start=False)
        self._budget = budget
        self.set_grant(0, 0, None)

    def set_grant(self, slots: int, generation: int, ceiling: int | None) -> None:
        """Take the grant, generation and ceiling the shared budget holds now."""
        self._limit = float(slots)
        self._generation = generation
        self._ceiling = ceiling
        self._wake()

    def on_success(self, ticket: LimiterTicket) -> None:
        if ticket.generation == self._generation and (
            ticket.saturated or self.in_flight + self.waiting >= self._limit / 2
        ):
            self._budget.successes += 1

    def hint(self, allowed: int) -> None:
        """Rate headers' estimate of calls admissible now: not used (the shared figure grows
        from every process's successes instead)."""

    def on_overload(self, ticket: LimiterTicket, *, capacity: bool) -> bool:
        return self._budget.overloaded(ticket, capacity=capacity)


class SharedBudget:
    """This process's lease on one endpoint's shared budget. See the module docstring.

    ``async with SharedBudget(db, settings, rate) as budget:`` registers the lease and keeps
    it by heartbeat until exit (when it is deleted, freeing the share at once). ``rate`` is the
    gateway's :class:`RateBudget`, paced at this process's fraction.
    """

    def __init__(
        self,
        database: Database,
        settings: ShareSettings,
        rate: RateBudget | None = None,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = database
        self.settings = settings
        self.rate = rate
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.slots = 0
        """Slots recorded as this process's: its share, and above it calls still in flight."""
        self.share = 0
        """Calls this process may admit now (at most its grant)."""
        self.fraction = 0.0
        """Its part of the endpoint's rate limits."""
        self.generation = 0
        self.ceiling: int | None = None
        self.concurrency = float(settings.start)
        """The endpoint's limit, as of the last heartbeat."""
        self.successes = 0
        """Successes to report at the next heartbeat (calls that used the grant)."""
        self.others_in_flight = 0
        self.others_slots = 0
        self.heartbeats = 0
        self._clock = clock
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cuts: set[asyncio.Task[None]] = set()
        self.limiter = SharedLimiter(self)

    # --- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> SharedBudget:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Take the first grant (at most what nobody holds) and start the heartbeat."""
        await self.heartbeat()
        self._task = asyncio.create_task(self._beat(), name=f"shared-budget:{self.holder}")

    async def aclose(self) -> None:
        """Stop the heartbeat and delete the lease: the share is free at once."""
        tasks = [t for t in (self._task, *self._cuts) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        with contextlib.suppress(Exception):
            async with self.db.pool.connection() as conn:
                await conn.execute(
                    "DELETE FROM provider_shares WHERE endpoint = %s AND holder = %s",
                    (self.settings.endpoint, self.holder),
                )

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat_s):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may come back; the grant stands meanwhile
                log.warning("shared budget heartbeat failed: %s", exc)

    # --- the shared figures -----------------------------------------------------------------
    async def heartbeat(self) -> None:
        """Renew the lease, report successes, drop dead leases and take this process's share."""
        s = self.settings
        successes, self.successes = self.successes, 0
        in_flight = self.limiter.in_flight
        demand = in_flight + self.limiter.waiting
        weight = 1.0 if demand else _IDLE_WEIGHT
        async with self.db.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO provider_budgets (endpoint, concurrency, rpm, tpm)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (endpoint) DO NOTHING",
                (s.endpoint, float(s.start), s.rpm, s.tpm),
            )
            cur = await conn.execute(
                "SELECT concurrency, ceiling, rpm, tpm, generation FROM provider_budgets"
                " WHERE endpoint = %s FOR UPDATE",
                (s.endpoint,),
            )
            row = await cur.fetchone()
            assert row is not None
            concurrency, ceiling, rpm, tpm, generation = row
            concurrency = self._grow(float(concurrency), ceiling, generation, successes)
            rpm = _least(rpm, s.rpm)
            tpm = _least(tpm, s.tpm)
            await conn.execute(
                "DELETE FROM provider_shares WHERE endpoint = %s AND expires_at < now()",
                (s.endpoint,),
            )
            cur = await conn.execute(
                "SELECT slots, weight, in_flight FROM provider_shares"
                " WHERE endpoint = %s AND holder <> %s",
                (s.endpoint, self.holder),
            )
            others = await cur.fetchall()
            held_by_others = sum(r[0] for r in others)
            total_weight = weight + sum(r[1] for r in others)
            fraction = weight / total_weight
            # Rounded up: the last process to renew gets what is left, so no slot goes unused.
            fair = math.ceil(concurrency * fraction - 1e-9)
            free = max(0, math.floor(concurrency) - held_by_others)
            share = min(fair, free)
            # Calls in flight above the share keep their slots (nobody else may take them),
            # but their slots are not admitted again: they are given back as the calls end.
            slots = max(share, min(in_flight, self.slots))
            await conn.execute(
                "INSERT INTO provider_shares (endpoint, holder, slots, fraction, weight,"
                " in_flight, expires_at) VALUES (%s, %s, %s, %s, %s, %s,"
                " now() + make_interval(secs => %s)) ON CONFLICT (endpoint, holder) DO UPDATE"
                " SET slots = EXCLUDED.slots, fraction = EXCLUDED.fraction,"
                " weight = EXCLUDED.weight, in_flight = EXCLUDED.in_flight,"
                " expires_at = EXCLUDED.expires_at",
                (s.endpoint, self.holder, slots, fraction, weight, in_flight, s.lease_s),
            )
            await conn.execute(
                "UPDATE provider_budgets SET concurrency = %s, rpm = %s, tpm = %s,"
                " updated_at = now() WHERE endpoint = %s",
                (concurrency, rpm, tpm, s.endpoint),
            )
        self.concurrency = concurrency
        self.ceiling = ceiling
        self.generation = generation
        self.others_in_flight = sum(r[2] for r in others)
        self.others_slots = sum(r[0] for r in others)
        self.slots = slots
        self.share = share
        self.fraction = fraction
        self.heartbeats += 1
        if self.rate is not None:
            self.rate.set_share(fraction)
        self.limiter.set_grant(share, generation, ceiling)

    def _grow(self, concurrency: float, ceiling: int | None, generation: int, n: int) -> float:
        s = self.settings
        for _ in range(n):
            if generation == 0 or (ceiling is not None and concurrency + 1 <= ceiling):
                concurrency += 1.0
            elif ceiling is not None:
                concurrency += 1.0 / (concurrency * s.probe_windows)
            else:
                concurrency += 1.0 / concurrency
        return min(concurrency, float(s.maximum))

    def overloaded(self, ticket: LimiterTicket, *, capacity: bool) -> bool:
        """A call pushed back: cut the shared limit (once per episode) and, for a capacity
        signal, teach the shared ceiling. The database is written in the background; this
        process shrinks its grant at once."""
        if ticket.generation != self.generation:
            return False  # admitted before the last cut known here: the same episode
        held = None
        if capacity:
            # The provider holds this process's other calls and the other processes' calls:
            # their grants as of the last heartbeat (a process refused is one that uses its
            # grant, and so, in a burst, are the others: their reported in-flight lags).
            held = max(0, ticket.position - 1) + max(self.others_in_flight, self.others_slots)
        cut = math.floor(self.slots * self.settings.decrease_factor)
        self.slots = max(min(self.settings.minimum, self.slots), cut)
        self.share = min(self.share, self.slots)
        self.generation += 1  # later failures of calls admitted before this are the same episode
        self.limiter.set_grant(self.share, self.generation, self.ceiling)
        task = asyncio.get_running_loop().create_task(self._cut(ticket.generation, held))
        self._cuts.add(task)
        task.add_done_callback(self._cuts.discard)
        return True

    async def _cut(self, seen: int, held: int | None) -> None:
        s = self.settings
        cap = None if held is None else max(s.minimum, math.floor(held * s.ceiling_margin))
        try:
            async with self.db.pool.connection() as conn:
                await conn.execute(
                    "UPDATE provider_budgets SET"
                    " concurrency = greatest(%s::float8, least(concurrency * %s,"
                    "   coalesce(%s::float8, concurrency))),"
                    " ceiling = CASE WHEN %s::int IS NULL THEN ceiling"
                    "   ELSE least(coalesce(ceiling, %s::int), %s::int) END,"
                    " generation = generation + 1, cut_at = now(), updated_at = now()"
                    " WHERE endpoint = %s AND generation = %s",
                    (s.minimum, s.decrease_factor, cap, cap, cap, cap, s.endpoint, seen),
                )
        except Exception as exc:
            log.warning("shared budget cut not stored: %s", exc)
        self._kick.set()

    def describe(self) -> dict[str, Any]:
        """This process's grant and the shared figures as last seen."""
        return {
            "holder": self.holder,
            "slots": self.slots,
            "fraction": self.fraction,
            "concurrency": self.concurrency,
            "ceiling": self.ceiling,
            "generation": self.generation,
            "heartbeats": self.heartbeats,
        }


def _least(*values: float | None) -> float | None:
    present = [v for v in values if v]
    return min(present) if present else None
