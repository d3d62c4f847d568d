"""Which earlier LLM calls (and work) each call waited for, recorded when a plan replays the
graph.

A plan turns the calls of a replayed run into expected wall time, and for that it needs the
order the run imposes: a call starts only once what it depends on has ended. A run records
nothing (``PipelineContext.flow`` is None, and no task is created differently).

The dependencies are read off the replay's own concurrency, whatever shape the graph has:

- a graph step (a LangGraph superstep) starts once every task of the previous step has ended;
- within one asyncio task, calls happen one after the other;
- a task created by a task that is being followed starts from its creator's point, and
  whoever awaits it (``await task`` or ``task.result()``) goes on only after its end
  (:func:`following` installs a task factory that makes such tasks);
- time a task spends without calling the LLM (searching, packing, waiting for its turn) is
  *work* of the duration it took in the replay, on that task's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import weakref
from collections import defaultdict
from collections.abc import Coroutine, Generator, Iterator
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass
from typing import Any

from ..llm import CallEvent, CallFailed, CallFinished, CallStarted

__all__ = ["CallFlow", "FlowWork"]

_MIN_WORK_S = 0.002
"""Shorter stretches between calls are not recorded as work."""


@dataclass
class _Strand:
    """The point one task has reached: what its next call (or child) waits for."""

    flow: CallFlow
    frontier: frozenset[int]
    node: str
    mark: float
    """When the frontier was last reached (work is measured from here)."""


_strand: ContextVar[_Strand | None] = ContextVar("proposals_call_flow", default=None)


@dataclass(frozen=True, slots=True)
class FlowWork:
    """Time a task spent without an LLM call: its node, duration and what it waited for."""

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

    def _settle(self, strand: _Strand) -> None:
        """Record the time since the strand's mark as work on its path."""
        now = time.perf_counter()
        if now - strand.mark >= _MIN_WORK_S:
            work_id = next(self._work_ids)
            after = tuple(sorted(strand.frontier))
            self.work[work_id] = FlowWork(strand.node, now - strand.mark, after)
            strand.frontier = frozenset({work_id})
        strand.mark = now

    @contextlib.contextmanager
    def task(self, node: str, step: int) -> Iterator[None]:
        """Around one graph node's work in ``step``: it starts after the previous step's tasks
        (and, run inside a followed task, after that task's point)."""
        earlier = [s for s in self._ends if s < step]
        start = frozenset(self._ends[max(earlier)]) if earlier else frozenset()
        outer = _strand.get()
        if outer is not None and outer.flow is self:
            self._settle(outer)
            start |= outer.frontier
        strand = _Strand(self, start, node, time.perf_counter())
        token = _strand.set(strand)
        try:
            yield
        finally:
            _strand.reset(token)
            self._settle(strand)
            self._ends[step] |= strand.frontier
            if outer is not None and outer.flow is self:
                outer.frontier, outer.mark = strand.frontier, strand.mark

    def on_call(self, event: CallEvent) -> None:
        """A gateway listener: runs in the calling task, so it sees that task's strand."""
        strand = _strand.get()
        if strand is None or strand.flow is not self:
            return
        if isinstance(event, CallStarted):
            self._settle(strand)
            self.calls[event.call_id] = tuple(sorted(strand.frontier))
        elif isinstance(event, CallFinished | CallFailed):
            strand.frontier = frozenset({event.call_id})
            strand.mark = time.perf_counter()

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """While open, tasks created inside a followed task are followed too (a task factory
        on the running loop; tasks of anything else are created as before)."""
        loop = asyncio.get_running_loop()
        _install(loop)
        try:
            yield
        finally:
            _uninstall(loop)


class _FollowedTask(asyncio.Task):  # type: ignore[type-arg]
    """A task whose end is joined into whoever awaits it or reads its result."""

    _flow_strand: _Strand

    def __await__(self) -> Generator[Any, None, Any]:
        result = yield from super().__await__()
        _join(self._flow_strand)
        return result

    __iter__ = __await__

    def result(self) -> Any:
        value = super().result()
        _join(self._flow_strand)
        return value


def _join(child: _Strand) -> None:
    strand = _strand.get()
    if strand is not None and strand.flow is child.flow and strand is not child:
        strand.frontier |= child.frontier
        strand.mark = time.perf_counter()


_previous: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, int]] = (
    weakref.WeakKeyDictionary()
)


def _factory(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], context: Context | None = None
) -> asyncio.Task[Any]:
    parent = (context.get(_strand) if context is not None else _strand.get()) or None
    if parent is None:
        previous = _previous.get(loop, (None, 0))[0]
        if previous is not None:
            if context is None:
                return previous(loop, coro)  # type: ignore[no-any-return]
            return previous(loop, coro, context=context)  # type: ignore[no-any-return]
        return asyncio.Task(coro, loop=loop, context=context)
    parent.flow._settle(parent)
    child = _Strand(parent.flow, parent.frontier, parent.node, time.perf_counter())
    context = context if context is not None else copy_context()
    context.run(_strand.set, child)
    task = _FollowedTask(coro, loop=loop, context=context)
    task._flow_strand = child
    # Its last stretch without a call is work too, up to its end (not to the join).
    task.add_done_callback(lambda _: child.flow._settle(child))
    return task


def _install(loop: asyncio.AbstractEventLoop) -> None:
    previous, count = _previous.get(loop, (None, 0))
    if count == 0:
        previous = loop.get_task_factory()
        loop.set_task_factory(_factory)  # type: ignore[arg-type]
    _previous[loop] = (previous, count + 1)


def _uninstall(loop: asyncio.AbstractEventLoop) -> None:
    previous, count = _previous[loop]
    if count == 1:
        loop.set_task_factory(previous)
        del _previous[loop]
    else:
        _previous[loop] = (previous, count - 1)
