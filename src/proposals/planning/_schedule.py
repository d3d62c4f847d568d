"""Expected wall time: the replayed calls scheduled under a provider's limits.

A discrete-event schedule over the calls' dependencies (:class:`~proposals.pipeline.CallFlow`):
a call is ready once what it waited for has ended; it starts when the client's concurrency
limit has a slot and the provider's request and token buckets admit it (the simulator's own
:class:`~proposals.simulator.RateLimiter`, run on the schedule's clock: prompt + ``max_tokens``
charged up front, bursts of ``burst_s``); it lasts the provider's latency (time to first
token + per output token). Work without calls (retrieval, drawing evidence) lasts what it
took when the plan replayed it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from ..pipeline import CallFlow
from ..simulator import RateLimiter, SimulatorProfile

__all__ = ["PlannedCall", "Schedule", "schedule"]

_CEILING_MARGIN = 0.95
"""Share of a connection cap the gateway's limiter settles at once it has learned the cap."""


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One replayed LLM call: what the schedule needs of it."""

    call_id: int
    node: str
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When each call and each piece of work would start and end (seconds from the start)."""

    spans: dict[int, tuple[float, float]]
    nodes: dict[int, str]

    @property
    def wall_s(self) -> float:
        return max((end for _, end in self.spans.values()), default=0.0)

    def node_wall_s(self, node: str) -> float:
        """From the node's first start to its last end."""
        mine = [self.spans[i] for i, n in self.nodes.items() if n == node and i in self.spans]
        if not mine:
            return 0.0
        return max(e for _, e in mine) - min(s for s, _ in mine)


def schedule(
    calls: list[PlannedCall],
    flow: CallFlow,
    profile: SimulatorProfile,
    *,
    concurrency_start: int,
    concurrency_max: int,
) -> Schedule:
    """Schedule ``calls`` (and the flow's work) under ``profile``'s limits and latency.

    The client's limit starts at ``concurrency_start`` and grows by one per answered call
    while calls wait (the gateway's slow start) up to ``concurrency_max``, or to the
    provider's connection cap; when the provider states request or token limits the gateway
    learns them from its headers and the limit stops mattering, so it starts at the maximum.
    """
    now = 0.0
    rate = RateLimiter(
        profile.rpm,
        profile.tpm,
        time_scale=profile.time_scale,
        burst_s=profile.burst_s,
        clock=lambda: now,
    )
    cap = concurrency_max
    if profile.max_connections is not None:
        cap = min(cap, max(1, math.floor(profile.max_connections * _CEILING_MARGIN)))
    limit = cap if (profile.rpm or profile.tpm) else min(cap, concurrency_start)
    by_id = {c.call_id: c for c in calls}
    after = {c.call_id: flow.calls.get(c.call_id, ()) for c in calls}
    after.update({w: work.after for w, work in flow.work.items()})
    nodes = {c.call_id: c.node for c in calls} | {w: x.node for w, x in flow.work.items()}
    waiting_on = {i: {d for d in deps if d in after} for i, deps in after.items()}
    dependents: dict[int, list[int]] = {}
    for i, deps in waiting_on.items():
        for d in deps:
            dependents.setdefault(d, []).append(i)

    spans: dict[int, tuple[float, float]] = {}
    ready: list[tuple[float, int]] = []
    running: list[tuple[float, int]] = []

    def became_ready(item: int, at: float) -> None:
        if item < 0:  # work needs no provider capacity: it starts at once
            end = at + flow.work[item].duration_s
            spans[item] = (at, end)
            heapq.heappush(running, (end, item))
        else:
            heapq.heappush(ready, (at, item))

    for item, deps in waiting_on.items():
        if not deps:
            became_ready(item, 0.0)
    in_flight = 0
    blocked_until = 0.0
    while ready or running:
        # Start the calls that can start now, in the order they became ready (FIFO).
        while ready and ready[0][0] <= now and in_flight < limit and now >= blocked_until:
            call = by_id[ready[0][1]]
            cause, wait = rate.try_acquire(call.prompt_tokens + (call.max_tokens or 0))
            if cause is not None:
                blocked_until = now + max(wait, 1e-6)
                break
            heapq.heappop(ready)
            end = now + profile.latency_s(call.completion_tokens)
            spans[call.call_id] = (now, end)
            heapq.heappush(running, (end, call.call_id))
            in_flight += 1
        moments = [running[0][0]] if running else []
        if ready and in_flight < limit:
            moments.append(max(ready[0][0], blocked_until))
        if not moments:
            break
        now = max(now, min(moments))
        while running and running[0][0] <= now:
            _, item = heapq.heappop(running)
            if item > 0:
                in_flight -= 1
                if ready and limit < cap:
                    limit += 1
            for nxt in dependents.get(item, ()):
                waiting_on[nxt].discard(item)
                if not waiting_on[nxt]:
                    became_ready(nxt, now)
    return Schedule(spans, nodes)
