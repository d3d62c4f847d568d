"""The run's event emitter: numbers events, tracks usage and progress, stores, then publishes.

It implements the pipeline's ``Reporter`` and listens to the gateway's call events for its
run. :meth:`RunEmitter.emit` never blocks and never awaits: events wait in a buffer that the
writer task stores in PostgreSQL (one fenced transaction per batch, see
:class:`~proposals.runs._log.EventLog`) and only then hands to ``publish``, so nobody ever sees
an event that is not in the log. The batch is whatever accumulated during the previous write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import llm
from ..errors import ProposalsError
from ..pipeline import FailedItem, Proposal, ProposalResult, RunStatus, UsageTotals
from ._events import (
    BatchFinished,
    BatchStarted,
    CallEvent,
    ItemFailed,
    NodeFinished,
    NodeStarted,
    ProposalEvent,
    RunEvent,
    RunFinished,
    WarningEvent,
)
from ._log import EventLog, LeaseLost
from ._store import Lease, NodeProgress

__all__ = ["RunEmitter"]

Publish = Callable[[Sequence[RunEvent]], None]


class RunEmitter:
    """Event source of one run held under ``lease``: ``emit`` is synchronous; a writer task
    (:meth:`start`) stores and publishes; :meth:`finish` stores the terminal event with the
    run's final status in one transaction."""

    def __init__(
        self,
        run_id: str,
        *,
        log: EventLog,
        lease: Lease,
        publish: Publish,
        start_seq: int = 0,
        usage: UsageTotals | None = None,
        progress: Mapping[str, NodeProgress] | None = None,
        on_cancel_requested: Callable[[], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self._log = log
        self._lease = lease
        self._publish = publish
        self._on_cancel = on_cancel_requested
        self._seq = start_seq
        self._stored = start_seq
        """Seq of the last event known to be stored."""
        self._usage = llm.UsageTally(usage)
        # Batches in flight when a previous holder died are not in flight any more.
        self._progress: dict[str, dict[str, int]] = {
            node: {**p.model_dump(), "in_flight": 0} for node, p in (progress or {}).items()
        }
        self.in_flight = 0
        self._pending: list[RunEvent] = []
        self._wake = asyncio.Event()
        self._stop = False
        self._writer: asyncio.Task[None] | None = None

    # -- core ----------------------------------------------------------------------------------

    @property
    def usage(self) -> UsageTotals:
        """Usage of the run so far."""
        return self._usage.snapshot()

    @property
    def progress(self) -> dict[str, NodeProgress]:
        """Progress per node so far."""
        return {node: NodeProgress(**p) for node, p in self._progress.items()}

    @property
    def seq(self) -> int:
        return self._seq

    def emit(self, event_type: type[Any], **fields: Any) -> RunEvent:
        """Number, stamp with usage, and queue one event for storing and publishing."""
        self._seq += 1
        event = event_type(run_id=self.run_id, seq=self._seq, usage=self.usage, **fields)
        self._track(event)
        self._pending.append(event)
        self._wake.set()
        return event

    def _track(self, event: RunEvent) -> None:
        node = getattr(event, "node", None)
        if isinstance(event, ItemFailed):
            node = event.failure.node
        if node is None or isinstance(event, CallEvent | WarningEvent):
            return
        p = self._progress.setdefault(node, {"total": 0, "done": 0, "in_flight": 0, "failed": 0})
        if isinstance(event, NodeStarted):
            p["total"] = event.total
        elif isinstance(event, BatchStarted):
            p["in_flight"] += 1
        elif isinstance(event, BatchFinished):
            p["in_flight"] = max(0, p["in_flight"] - 1)
            p["done"] += 1
        elif isinstance(event, ItemFailed):
            p["failed"] += 1
        elif isinstance(event, NodeFinished) and not p["done"]:
            p["done"] = event.done  # nodes without batches (retrieve, plan) count at the end

    # -- storing -------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Start the writer task; it ends (or raises, e.g. ``LeaseLost``) as the run ends."""
        self._writer = asyncio.create_task(self._write_loop(), name=f"events-{self.run_id}")
        return self._writer

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            await self._flush()

    async def _flush(
        self, final: tuple[RunStatus, ProposalResult | None, str | None] | None = None
    ) -> None:
        batch, self._pending = self._pending, []
        usage = batch[-1].usage if batch else self.usage
        try:
            cancel = await self._log.append(
                self._lease, batch, usage=usage, progress=self.progress, final=final
            )
        except BaseException:
            self._pending[:0] = batch  # not stored: kept for the next (terminal) write
            raise
        if batch:
            self._stored = batch[-1].seq
            self._publish(batch)
        if cancel and self._on_cancel is not None:
            self._on_cancel()

    async def stop(self) -> None:
        """Stop the writer after its current write (events not yet stored stay buffered)."""
        self._stop = True
        self._wake.set()
        if self._writer is not None:
            # The writer's error, if any, was seen by the run (it watches the task).
            with contextlib.suppress(Exception):
                await self._writer

    async def flush(self) -> None:
        """Store what is buffered now (the writer must be stopped)."""
        await self._flush()

    async def finish(
        self,
        status: RunStatus,
        *,
        result: ProposalResult | None = None,
        error: str | None = None,
        elapsed_s: float = 0.0,
    ) -> RunFinished:
        """Stop the writer, then store every buffered event, the ``run_finished`` event and
        the final status in one transaction, and publish them."""
        await self.stop()
        event = self._finished(status, result, error, elapsed_s)
        try:
            await self._flush(final=(status, result, error))
        except LeaseLost:
            raise
        except ProposalsError as exc:
            # Some buffered event cannot be stored (the writer died on it): end the run with
            # its terminal event right after the last stored one, so the log has no gap.
            lost = len(self._pending) - 1
            self._pending.clear()
            self._seq = self._stored
            error = f"{lost} events of run {self.run_id} could not be stored: {exc}"
            event = self._finished("failed", None, error, elapsed_s)
            await self._flush(final=("failed", None, error))
        return event

    def _finished(
        self, status: RunStatus, result: ProposalResult | None, error: str | None, elapsed: float
    ) -> RunFinished:
        event = self.emit(
            RunFinished,
            status=status,
            proposals=len(result.proposals) if result else 0,
            failed=len(result.failed) if result else 0,
            elapsed_s=round(elapsed, 3),
            result=result,
            error=error,
        )
        assert isinstance(event, RunFinished)
        return event

    # -- gateway call events -------------------------------------------------------------------

    def on_call(self, event: Any) -> None:
        """Gateway listener: account usage and publish a ``call`` event."""
        u = self._usage
        extra: dict[str, Any] = {}
        if isinstance(event, llm.CallStarted):
            self.in_flight += 1
            phase = "started"
        elif isinstance(event, llm.CallRetry):
            u.add_retry()
            phase = "retry"
            extra["detail"] = (
                f"attempt {event.attempt} failed ({event.reason}); retry in {event.wait_s:.2f}s"
            )
        elif isinstance(event, llm.CallFinished):
            self.in_flight = max(0, self.in_flight - 1)
            phase = "finished"
            u.add(event.usage)
            extra.update(
                prompt_tokens=event.usage.prompt_tokens,
                completion_tokens=event.usage.completion_tokens,
                cached=event.cached,
            )
        elif isinstance(event, llm.CallFailed):
            self.in_flight = max(0, self.in_flight - 1)
            u.add_failure()
            phase = "failed"
            extra["detail"] = f"{event.error_type}: {event.error}"
        else:  # pragma: no cover - a newer gateway event
            return
        self.emit(CallEvent, node=event.node, phase=phase, in_flight=self.in_flight, **extra)

    # -- pipeline reporter ---------------------------------------------------------------------

    def node_started(self, node: str, total: int) -> None:
        self.emit(NodeStarted, node=node, total=total)

    def node_finished(self, node: str, done: int, failed: int = 0) -> None:
        self.emit(NodeFinished, node=node, done=done, failed=failed)

    def batch_started(self, node: str, batch: str, items: int, tokens: int) -> None:
        self.emit(BatchStarted, node=node, batch=batch, items=items, tokens=tokens)

    def batch_finished(self, node: str, batch: str, items: int, ok: bool) -> None:
        self.emit(BatchFinished, node=node, batch=batch, items=items, ok=ok)

    def item_failed(self, failure: FailedItem) -> None:
        self.emit(ItemFailed, failure=failure)

    def warning(self, kind: str, message: str, node: str | None = None) -> None:
        self.emit(WarningEvent, kind=kind, message=message, node=node)

    def proposal(self, proposal: Proposal) -> None:
        self.emit(ProposalEvent, proposal=proposal)
