"""Which earlier LLM calls each call waited for, recorded when a plan replays the graph.

A plan turns the calls of a replayed run into expected wall time, and for that it needs the
order the graph imposes: a call starts only once the calls it depends on have answered. A run
records nothing (``PipelineContext.flow`` is None and each hook is one context-variable read).

The dependencies come from the graph's own structure, where it forks and joins:

- a graph step (a LangGraph superstep) starts once every task of the previous step has ended;
- within a task, calls happen one after the other;
- tasks forked by :func:`~proposals.pipeline._calls.gather_isolated` start from their parent's
  point, and the parent goes on once all of them have ended.

A task that makes no call at all (retrieval, drawing evidence per item) is recorded as *work*
of its measured duration, so what comes after it waits for it too.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..llm import CallEvent, CallFailed, CallFinished, CallStarted

__all__ = ["CallFlow", "FlowWork", "branch", "joined"]


@dataclass
class _Strand:
    """The point one task has reached: the calls (or work) its next call waits for."""

    flow: CallFlow
    frontier: frozenset[int]
    called: bool = False
    children: set[int] = field(default_factory=set)
    """Frontiers of the branches forked from here that have ended (joined at the fork's end)."""


_strand: ContextVar[_Strand | None] = ContextVar("proposals_call_flow", default=None)


@dataclass(frozen=True, slots=True)
class FlowWork:
    """A task that made no LLM call: its node, measured duration and what it waited for."""

    node: str
    duration_s: float
    after: tuple[int, ...]


class CallFlow:
    """The dependency record of one replayed run: ``calls[call_id]`` are the ids (gateway call
    ids; negative ids are :class:`FlowWork`) that call waited for."""

    def __init__(self) -> None:
        self.calls: dict[int, tuple[int, ...]] = {}
        self.work: dict[int, FlowWork] = {}
        self._ends: dict[int, set[int]] = defaultdict(set)
        self._work_ids = itertools.count(-1, -1)

    @contextlib.contextmanager
    def task(self, node: str, step: int) -> Iterator[None]:
        """Around one graph task of ``step``: it starts after the previous step's tasks."""
        earlier = [s for s in self._ends if s < step]
        start = frozenset(self._ends[max(earlier)]) if earlier else frozenset()
        strand = _Strand(self, start)
        token = _strand.set(strand)
        began = time.perf_counter()
        try:
            yield
        finally:
            _strand.reset(token)
            if not strand.called:
                work_id = next(self._work_ids)
                self.work[work_id] = FlowWork(
                    node, time.perf_counter() - began, tuple(sorted(start))
                )
                strand.frontier = frozenset({work_id})
            self._ends[step] |= strand.frontier

    def on_call(self, event: CallEvent) -> None:
        """A gateway listener: runs in the calling task, so it sees that task's strand."""
        strand = _strand.get()
        if strand is None or strand.flow is not self:
            return
        if isinstance(event, CallStarted):
            self.calls[event.call_id] = tuple(sorted(strand.frontier))
        elif isinstance(event, CallFinished | CallFailed):
            strand.frontier = frozenset({event.call_id})
            strand.called = True


@contextlib.contextmanager
def branch() -> Iterator[None]:
    """Inside a forked task: its calls start from the parent's point; when it ends, its
    point is handed to the parent (see :func:`joined`)."""
    parent = _strand.get()
    if parent is None:
        yield
        return
    child = _Strand(parent.flow, parent.frontier)
    token = _strand.set(child)
    try:
        yield
    finally:
        _strand.reset(token)
        parent.children |= child.frontier
        parent.called |= child.called


@contextlib.contextmanager
def joined() -> Iterator[None]:
    """Around a fork in the parent: afterwards the parent waits for every branch's end."""
    yield
    strand = _strand.get()
    if strand is not None and strand.children:
        strand.frontier = frozenset(strand.children)
        strand.children = set()
