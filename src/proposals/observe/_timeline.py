"""The timeline of a run's LLM calls: when each started and ended, in which node, with what
tokens, retries and outcome; and its drawing (calls in flight over time, one row per node).

The data comes from the run's stored call events, so any process can rebuild it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["Timeline", "TimelineBuilder", "TimelineCall", "draw_timeline"]

Outcome = Literal["ok", "cached", "failed", "open"]


class TimelineCall(BaseModel):
    """One LLM call of a run."""

    call_id: int
    node: str
    model: str | None = None
    start_s: float
    """Seconds since the run's first call started."""
    end_s: float | None = None
    """``None`` while the call is open (the run was stopped in the middle of it)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    outcome: Outcome = "open"


class Timeline(BaseModel):
    """Every LLM call of a run, in start order."""

    run_id: str
    started_at: datetime | None = None
    """Wall-clock time of ``start_s == 0``."""
    calls: list[TimelineCall] = Field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        """Nodes in the order their first call started."""
        return list(dict.fromkeys(c.node for c in self.calls))

    def in_flight(self, node: str | None = None) -> list[tuple[float, int]]:
        """Steps ``(time, calls in flight from then on)`` for one node (``None``: all)."""
        edges: list[tuple[float, int]] = []
        for c in self.calls:
            if node is not None and c.node != node:
                continue
            end = c.end_s if c.end_s is not None else self.duration_s
            edges.append((c.start_s, 1))
            edges.append((end, -1))
        edges.sort(key=lambda e: (e[0], e[1]))
        out: list[tuple[float, int]] = []
        level = 0
        for t, d in edges:
            level += d
            if out and out[-1][0] == t:
                out[-1] = (t, level)
            else:
                out.append((t, level))
        return out

    @property
    def duration_s(self) -> float:
        ends = [c.end_s if c.end_s is not None else c.start_s for c in self.calls]
        return max(ends, default=0.0)


class TimelineBuilder:
    """Folds call events (started / retry / finished / failed) into a :class:`Timeline`."""

    def __init__(self, run_id: str) -> None:
        self._timeline = Timeline(run_id=run_id)
        self._open: dict[int, TimelineCall] = {}
        self._t0: datetime | None = None
        self._next_id = 0

    def _seconds(self, at: datetime) -> float:
        if self._t0 is None:
            self._t0 = at
            self._timeline.started_at = at
        return (at - self._t0).total_seconds()

    def add(
        self,
        *,
        at: datetime,
        phase: str,
        node: str | None,
        call_id: int | None = None,
        model: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached: bool = False,
        cost_usd: float = 0.0,
    ) -> None:
        """One call event. Without ``call_id`` (events of older runs) a finishing event closes
        the oldest open call of its node."""
        t = self._seconds(at)
        node_name = node or "-"
        if phase == "started":
            if call_id is None:
                call_id = self._next_id = self._next_id - 1  # negative: synthetic ids
            opened = TimelineCall(call_id=call_id, node=node_name, model=model, start_s=t)
            self._open[call_id] = opened
            self._timeline.calls.append(opened)
            return
        call = self._find(call_id, node_name)
        if call is None:
            return
        if phase == "retry":
            call.retries += 1
            return
        if phase in ("finished", "failed"):
            call.end_s = t
            call.prompt_tokens = prompt_tokens
            call.completion_tokens = completion_tokens
            call.cost_usd = cost_usd
            call.outcome = "failed" if phase == "failed" else ("cached" if cached else "ok")
            self._open.pop(call.call_id, None)

    def _find(self, call_id: int | None, node: str) -> TimelineCall | None:
        if call_id is not None:
            return self._open.get(call_id)
        for call in self._open.values():
            if call.node == node:
                return call
        return None

    def build(self) -> Timeline:
        return self._timeline.model_copy(deep=True)


_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


def draw_timeline(
    timeline: Timeline, path: Path, *, order: Sequence[str] | None = None
) -> list[str]:
    """Draw calls in flight over time, one row per node, to a PNG at ``path``.

    Returns the node rows drawn, top to bottom. Failed calls are marked with a red tick where
    they ended, retried ones with an orange one.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    nodes = list(order or timeline.nodes)
    nodes += [n for n in timeline.nodes if n not in nodes]
    rows = max(1, len(nodes))
    fig, axes = plt.subplots(
        rows, 1, sharex=True, figsize=(10, 1.2 + 1.3 * rows), squeeze=False, layout="constrained"
    )
    span = max(timeline.duration_s, 1e-6)
    for i, node in enumerate(nodes):
        ax = axes[i][0]
        steps = timeline.in_flight(node)
        xs = [0.0] + [t for t, _ in steps] + [span]
        ys = [0] + [n for _, n in steps] + [0]
        color = _COLORS[i % len(_COLORS)]
        ax.fill_between(xs, ys, step="post", alpha=0.35, color=color, linewidth=0)
        ax.step(xs, ys, where="post", color=color, linewidth=1)
        calls = [c for c in timeline.calls if c.node == node]
        tokens = sum(c.prompt_tokens + c.completion_tokens for c in calls)
        failed = [c.end_s for c in calls if c.outcome == "failed" and c.end_s is not None]
        retried = [c.start_s for c in calls if c.retries]
        if failed:
            ax.plot(failed, [0] * len(failed), "|", color="red", markersize=14)
        if retried:
            ax.plot(retried, [0] * len(retried), "|", color="orange", markersize=10)
        peak = max((n for _, n in steps), default=0)
        ax.set_ylim(0, max(1, peak) * 1.15)
        ax.set_ylabel(node, rotation=0, ha="right", va="center")
        ax.set_title(
            f"{node}: {len(calls)} calls, {tokens:,} tokens, peak {peak} in flight"
            + (f", {len(failed)} failed" if failed else "")
            + (f", {len(retried)} retried" if retried else ""),
            fontsize=9,
            loc="left",
        )
        ax.grid(axis="x", alpha=0.3)
    axes[-1][0].set_xlabel("seconds since the first call")
    fig.suptitle(f"run {timeline.run_id}: LLM calls in flight per node")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return nodes
