"""The run's event emitter: numbers events, tracks usage, feeds live listeners and the log.

It implements the pipeline's ``Reporter`` and listens to the gateway's call events for its
run. Emitting never blocks and never awaits: events go to an in-memory queue for live
consumers and to a buffer that :meth:`RunEmitter.writer` flushes to PostgreSQL in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .. import llm
from ..pipeline import FailedItem, Proposal, UsageTotals
from ._events import (
    BatchFinished,
    BatchStarted,
    CallEvent,
    ItemFailed,
    NodeFinished,
    NodeStarted,
    ProposalEvent,
    RunEvent,
    WarningEvent,
)
from ._store import EventLog

__all__ = ["RunEmitter"]

log = logging.getLogger(__name__)
_FLUSH_EVERY_S = 0.25
_FLUSH_AT = 200


class RunEmitter:
    """Event source of one run. ``emit`` is synchronous; ``writer()`` persists in the background."""

    def __init__(self, run_id: str, log_: EventLog | None, *, start_seq: int = 0) -> None:
        self.run_id = run_id
        self._log = log_
        self._seq = start_seq
        self._usage = llm.UsageTally()
        self.in_flight = 0
        self.queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._pending: list[RunEvent] = []
        self._wake = asyncio.Event()
        self._closed = False

    # -- core ----------------------------------------------------------------------------------

    @property
    def usage(self) -> UsageTotals:
        """Usage of the run so far."""
        return self._usage.snapshot()

    def restore_usage(self, usage: UsageTotals) -> None:
        """Continue counting from a resumed run's last known usage."""
        self._usage = llm.UsageTally(usage)

    @property
    def seq(self) -> int:
        return self._seq

    def emit(self, event_type: type[Any], **fields: Any) -> RunEvent:
        """Number, stamp with usage, and publish one event."""
        self._seq += 1
        event = event_type(run_id=self.run_id, seq=self._seq, usage=self.usage, **fields)
        self.queue.put_nowait(event)
        self._pending.append(event)
        if len(self._pending) >= _FLUSH_AT:
            self._wake.set()
        return event

    async def writer(self) -> None:
        """Flush events to the log until :meth:`close`; run it in the run's task group."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _FLUSH_EVERY_S)
            self._wake.clear()
            await self.flush()
            if self._closed:
                await self.flush()
                return

    async def flush(self) -> None:
        """Write buffered events now."""
        if not self._pending or self._log is None:
            self._pending.clear()
            return
        batch, self._pending = self._pending, []
        await self._log.append(batch)

    def close(self) -> None:
        """Let :meth:`writer` finish after its last flush."""
        self._closed = True
        self._wake.set()

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
