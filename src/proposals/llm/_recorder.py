"""What a gateway records about its calls: events to listeners, spans, usage and counters.

Every call emits :class:`CallStarted`, then :class:`CallRetry` per retried attempt, then
:class:`CallFinished` or :class:`CallFailed` to the listeners of its run; its ``chat`` span gets
the usage, retries and outcome; its usage is added to the per-run, per-node ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from ..observe import record_chat
from ._errors import ContextOverflowError, NonRetryableError, RetriesExhausted
from ._events import CallEvent, CallFailed, CallFinished, CallRetry, CallStarted
from ._usage import CallTags, Usage, UsageLedger

__all__ = ["CallRecorder", "Listener"]

log = logging.getLogger(__name__)

Listener = Callable[[CallEvent], None]


class _Answer(Protocol):
    """What the recorder reads of an answered call (an ``LLMResult``)."""

    @property
    def text(self) -> str: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def cached(self) -> bool: ...
    @property
    def model(self) -> str: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def answer_tokens(self) -> int | None: ...
    @property
    def attempts(self) -> int: ...


class CallRecorder:
    """Listeners, per-call retry counts, the usage ledger and the call outcome counters."""

    def __init__(self, *, trace_content: bool) -> None:
        self._trace_content = trace_content
        self._listeners: dict[str | None, list[Listener]] = defaultdict(list)
        self._call_retries: Counter[int] = Counter()
        """Retries of each call in flight (for its span)."""
        self.ledger = UsageLedger()
        self.counts: Counter[str] = Counter()
        """``calls``, ``succeeded``, ``failed``, ``cached``."""
        self.failures: Counter[str] = Counter()
        """Failed calls by cause."""

    def subscribe(self, run_id: str | None, callback: Listener) -> Callable[[], None]:
        """See :meth:`LLMGateway.subscribe`."""
        self._listeners[run_id].append(callback)

        def unsubscribe() -> None:
            listeners = self._listeners.get(run_id)
            if listeners and callback in listeners:
                listeners.remove(callback)
                if not listeners:
                    del self._listeners[run_id]
                    if run_id is not None:
                        self.ledger.forget(run_id)

        return unsubscribe

    def emit(self, event: CallStarted | CallRetry | CallFinished | CallFailed) -> None:
        """Deliver ``event`` to its run's listeners and to those of every run."""
        if isinstance(event, CallRetry):
            self._call_retries[event.call_id] += 1
        targets = list(self._listeners.get(event.run_id, ()))
        if event.run_id is not None:
            targets += self._listeners.get(None, ())
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("call event listener failed")

    def started(self, base: dict[str, Any]) -> None:
        self.counts["calls"] += 1
        self.emit(CallStarted(**base))

    def failed(
        self, span: Any, base: dict[str, Any], exc: BaseException, msgs: list[dict[str, Any]]
    ) -> None:
        """Count, trace and announce a call that failed for good."""
        self.counts["failed"] += 1
        self.failures[_failure_cause(exc)] += 1
        record_chat(
            span,
            retries=self._call_retries.pop(base["call_id"], 0),
            error_type=type(exc).__name__,
            messages=msgs if self._trace_content else None,
        )
        self.emit(
            CallFailed(**base, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__)
        )

    def traced(self, span: Any, call_id: int, result: _Answer, msgs: list[dict[str, Any]]) -> None:
        """Put an answered call's outcome on its span."""
        record_chat(
            span,
            response_model=result.model,
            input_tokens=result.usage.prompt_tokens,
            output_tokens=result.usage.completion_tokens,
            finish_reasons=[result.finish_reason or ""],
            retries=self._call_retries.pop(call_id, 0),
            cache_hit=result.cached,
            cost_usd=result.usage.cost_usd,
            messages=msgs if self._trace_content else None,
            completion=result.text if self._trace_content else None,
        )

    def finished(self, base: dict[str, Any], result: _Answer, started: float) -> None:
        """Count and announce an answered call."""
        self.counts["succeeded"] += 1
        if result.cached:
            self.counts["cached"] += 1
        self.emit(
            CallFinished(
                **base,
                usage=result.usage,
                cached=result.cached,
                attempts=result.attempts,
                duration_s=time.monotonic() - started,
                answer_tokens=result.answer_tokens,
            )
        )

    def add_usage(self, tags: CallTags, usage: Usage) -> None:
        self.ledger.add(tags, usage)


def _failure_cause(exc: BaseException) -> str:
    if isinstance(exc, RetriesExhausted):
        return f"retries_exhausted_{exc.cause}"
    if isinstance(exc, ContextOverflowError):
        return "context_overflow"
    if isinstance(exc, NonRetryableError):
        return f"non_retryable_{exc.status or exc.code or 'error'}"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__
