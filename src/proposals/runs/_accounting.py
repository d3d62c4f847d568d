"""A run's accounting per node and per model, and its timeline, folded from its call events.

The run's stored ``call`` events are the record: the emitter folds them as they happen (for
the result), and any process rebuilds the same from the event log (``proposals report``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ..llm import LoggedCall, UsageTotals
from ..observe import Timeline, TimelineBuilder, TimelineCall
from ._events import CallEvent, RunEvent

__all__ = ["CallLog", "lost_calls", "timeline_of", "usage_by"]


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


def lost_calls(events: Iterable[RunEvent], logged: Sequence[LoggedCall]) -> list[dict[str, Any]]:
    """``call`` events to store for answered calls whose own events were lost.

    The usage log row of a call is written with its answer; its ``finished`` event is stored a
    moment later by the run's event writer. A holder killed in between leaves a logged call
    without an event. Per (node, model, cached), as many logged calls as exceed the stored
    ``finished`` events are lost: those whose tokens match no stored event's, latest first (the
    log's order and the events' order may differ for calls answered at the same moment), then
    the latest others. Each gets a ``finished`` event closing its ``started``
    one when that was stored, else a ``started`` + ``finished`` pair under a synthetic negative
    id. Returns the fields of each event, in order.
    """
    stored: Counter[tuple[str | None, str | None, bool]] = Counter()
    stored_tokens: Counter[tuple[str | None, str | None, bool, int, int]] = Counter()
    open_calls: dict[int, CallEvent] = {}
    for event in events:
        if not isinstance(event, CallEvent):
            continue
        if event.phase == "started" and event.call_id is not None:
            open_calls[event.call_id] = event
        elif event.phase in ("finished", "failed"):
            open_calls.pop(event.call_id or 0, None)
            if event.phase == "finished":
                key = (event.node, event.model, event.cached)
                stored[key] += 1
                stored_tokens[(*key, event.prompt_tokens or 0, event.completion_tokens or 0)] += 1
    logged_by: dict[tuple[str | None, str | None, bool], list[LoggedCall]] = {}
    for call in logged:
        logged_by.setdefault((call.node, call.model, call.cached), []).append(call)
    lost: list[LoggedCall] = []
    for key, calls in logged_by.items():
        missing = len(calls) - stored[key]
        if missing <= 0:
            continue
        unmatched, matched = [], []
        for call in reversed(calls):  # latest first
            tokens = (*key, call.prompt_tokens, call.completion_tokens)
            if stored_tokens[tokens] > 0:
                stored_tokens[tokens] -= 1
                matched.append(call)
            else:
                unmatched.append(call)
        lost += (unmatched + matched)[:missing]
    lost.sort(key=lambda c: c.id)
    out: list[dict[str, Any]] = []
    for call in lost:
        opened = next(
            (e for e in open_calls.values() if (e.node, e.model) == (call.node, call.model)),
            None,
        )
        if opened is not None and opened.call_id is not None:
            call_id = opened.call_id
            del open_calls[call_id]
        else:
            call_id = -call.id
            out.append(
                {
                    "node": call.node,
                    "phase": "started",
                    "call_id": call_id,
                    "model": call.model,
                    "at": call.at,
                }
            )
        out.append(
            {
                "node": call.node,
                "phase": "finished",
                "call_id": call_id,
                "model": call.model,
                "at": call.at,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
                "cached": call.cached,
                "cost_usd": call.cost_usd,
                "detail": "recovered from the usage log (its event was lost with the process "
                "that held the run)",
            }
        )
    return out
