"""A run's accounting per node and per model, and its timeline, folded from its call events.

The run's stored ``call`` events are the record: the emitter folds them as they happen (for
the result), and any process rebuilds the same from the event log (``proposals report``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ..llm import UsageTotals
from ..observe import Timeline, TimelineBuilder, TimelineCall
from ._events import CallEvent, RunEvent

__all__ = ["CallLog", "timeline_of", "usage_by"]


class CallLog:
    """The calls of one run, folded from its ``call`` events."""

    def __init__(self, run_id: str) -> None:
        self._builder = TimelineBuilder(run_id)

    def add(self, event: RunEvent) -> None:
        """Fold one event (events other than ``call`` are ignored)."""
        if isinstance(event, CallEvent):
            self._builder.add(
                at=event.at,
                phase=event.phase,
                node=event.node,
                call_id=event.call_id,
                model=event.model,
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                cached=event.cached,
                cost_usd=event.cost_usd,
            )

    def timeline(self) -> Timeline:
        return self._builder.build()


def timeline_of(run_id: str, events: Iterable[RunEvent]) -> Timeline:
    """The timeline of a run from its stored events."""
    log = CallLog(run_id)
    for event in events:
        log.add(event)
    return log.timeline()


def _totals(calls: list[TimelineCall]) -> UsageTotals:
    answered = [c for c in calls if c.outcome == "ok"]
    cached = [c for c in calls if c.outcome == "cached"]
    ends = [c.end_s for c in calls if c.end_s is not None]
    start = min((c.start_s for c in calls), default=0.0)
    return UsageTotals(
        calls=len(answered),
        cached_calls=len(cached),
        failed_calls=sum(1 for c in calls if c.outcome == "failed"),
        retries=sum(c.retries for c in calls),
        prompt_tokens=sum(c.prompt_tokens for c in answered),
        completion_tokens=sum(c.completion_tokens for c in answered),
        cost_usd=sum(c.cost_usd for c in answered),
        cached_tokens=sum(c.prompt_tokens + c.completion_tokens for c in cached),
        wall_s=round(max(ends, default=start) - start, 3),
    )


def usage_by(timeline: Timeline, key: Literal["node", "model"]) -> dict[str, UsageTotals]:
    """Totals per node (in the order they first called) or per model."""
    groups: dict[str, list[TimelineCall]] = {}
    for call in timeline.calls:
        name = call.node if key == "node" else (call.model or "-")
        groups.setdefault(name, []).append(call)
    return {name: _totals(calls) for name, calls in groups.items()}
