"""The run-scoped schedule of the pipelined lens and synthesis work.

Countries plan their evidence one at a time, lowest index first, while the lens calls of the
countries already planned run; what the nodes would have reported stage by stage (``plan`` and
each lens started and finished, with totals) is reported from here as the work completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ._models import LENSES

if TYPE_CHECKING:
    from ..store import Store
    from ._context import PipelineContext

__all__ = ["RunSchedule"]


class RunSchedule:
    """Shared by the graph tasks of one run (it lives in the run's :class:`PipelineContext`,
    so a resumed run starts a fresh one)."""

    def __init__(self) -> None:
        self.stopped = False
        """A budget stop happened: start no new work."""
        self._store: Store | None = None
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._started = False
        self._items = 0
        self._planned = 0
        self._lens_total: Counter[str] = Counter()
        self._lens_done: Counter[str] = Counter()
        self._lens_failed: Counter[str] = Counter()
        self._announced_total: dict[str, int] = {}
        self.finished: set[str] = set()
        """Nodes whose ``node_finished`` was reported."""

    def store(self, ctx: PipelineContext) -> Store:
        """The run's store, searching through an embedder that embeds each query once."""
        from ._evidence import caching_store

        if self._store is None:
            self._store = caching_store(ctx.store)
        return self._store

    @contextlib.asynccontextmanager
    async def turn(self, index: int) -> AsyncIterator[None]:
        """Exclusive turn to plan; among those waiting, the lowest ``index`` goes first."""
        if self._busy:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (index, next(self._order), fut)
            heapq.heappush(self._waiting, entry)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._pass_on()  # granted as we were cancelled: hand the turn on
                else:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                raise
        self._busy = True
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self._busy = False

    # --- progress reporting ---------------------------------------------------------------
    def begin(self, ctx: PipelineContext, items: int, pairs: int) -> None:
        """The first country task of this invocation starts: planning and synthesis begin."""
        if self._started:
            return
        self._started = True
        self._items = items
        ctx.reporter.node_started("plan", total=items)
        ctx.reporter.node_started("synthesize", total=pairs)

    def planned(self, ctx: PipelineContext, batches: Counter[str], countries: int) -> None:
        """One country's batches are planned (``batches``: count per lens)."""
        self._planned += 1
        self._lens_total.update(batches)
        complete = self._planned >= countries
        for lens in LENSES:
            # Until every country is planned, the total is the first country's times all.
            total = self._lens_total[lens] if complete else batches[lens] * countries
            if self._announced_total.get(lens) != total and (complete or self._planned == 1):
                self._announced_total[lens] = total
                ctx.reporter.node_started(lens, total=total)
        if complete:
            self.report_finished(ctx, "plan", done=self._items)
            for lens in LENSES:
                self._lens_check(ctx, lens, complete=True)

    def batch_done(self, ctx: PipelineContext, lens: str, failed: int, countries: int) -> None:
        self._lens_done[lens] += 1
        self._lens_failed[lens] += failed
        self._lens_check(ctx, lens, complete=self._planned >= countries)

    def _lens_check(self, ctx: PipelineContext, lens: str, *, complete: bool) -> None:
        if complete and self._lens_done[lens] >= self._lens_total[lens]:
            self.report_finished(
                ctx, lens, done=self._lens_total[lens], failed=self._lens_failed[lens]
            )

    def report_finished(self, ctx: PipelineContext, node: str, done: int, failed: int = 0) -> None:
        """Report ``node`` finished, once."""
        if node not in self.finished:
            self.finished.add(node)
            ctx.reporter.node_finished(node, done=done, failed=failed)
            ctx.trace.end(node)
