"""Stalled requests: a first attempt's deadline learned from how long answers take."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Iterator

__all__ = ["StallWatch", "Watched"]


class _Times:
    """Recent answer times of one node (or of all): seconds, and seconds per output token."""

    def __init__(self, window: int) -> None:
        self.seen: deque[tuple[float, float]] = deque(maxlen=window)
        self._p99: tuple[float, float] | None = None

    def add(self, seconds: float, tokens: int) -> None:
        self.seen.append((seconds, seconds / max(1, tokens)))
        self._p99 = None

    def p99(self) -> tuple[float, float]:
        """The 99th percentiles of the seconds and of the seconds per token."""
        if self._p99 is None:
            at = min(len(self.seen) - 1, math.ceil(0.99 * len(self.seen)) - 1)
            self._p99 = (
                sorted(s for s, _ in self.seen)[at],
                sorted(r for _, r in self.seen)[at],
            )
        return self._p99


class Watched:
    """A first attempt in flight whose deadline may be brought forward as answers arrive."""

    __slots__ = ("_scope", "default_s", "max_tokens", "node", "sent_at", "shortened")

    def __init__(
        self, node: str | None, max_tokens: int | None, default_s: float, scope: asyncio.Timeout
    ) -> None:
        self.node = node
        self.max_tokens = max_tokens
        self.default_s = default_s
        self._scope = scope
        self.sent_at = asyncio.get_running_loop().time()
        self.shortened = False
        """Its deadline was brought before ``default_s``: a timeout is a stall."""

    def bring_forward(self, deadline_s: float) -> None:
        when = self.sent_at + deadline_s
        current = self._scope.when()
        if deadline_s < self.default_s and (current is None or when < current):
            self._scope.reschedule(when)
            self.shortened = True


class StallWatch:
    """How long answers take, per node, so a first attempt that has waited far longer than
    answers of its kind do is given up and sent again, instead of waiting out the whole
    attempt deadline.

    Providers now and then accept a request and never answer it (a stalled connection); with
    a fixed deadline each such request costs all of it, on the critical path when it is one of
    the last. Once ``min_samples`` answers of a node are known (until then, of every node: a
    node with few calls, such as synthesis, would otherwise never learn), a first attempt
    asking for ``max_tokens`` gets ``factor`` times the larger of the 99th percentile of
    their durations and ``max_tokens`` times the 99th percentile of their seconds per output
    token (an answer's time grows with its length; the first answers back are short ones,
    whose time to the first token makes the per-token figure generous), never less than
    ``floor_s`` and never more than the configured deadline. Attempts already in flight are
    watched (:meth:`watching`): as answers arrive their deadline is brought forward too, so
    the first wave of calls, sent before any answer was known, is covered as well. Retries
    keep the configured deadline, so a provider that merely slowed down still answers.
    """

    def __init__(
        self,
        factor: float | None,
        *,
        min_samples: int = 5,
        window: int = 200,
        floor_s: float = 2.0,
    ) -> None:
        self._factor = factor
        self._min = min_samples
        self._floor = floor_s
        self._window = window
        self._seen: dict[str, _Times] = {}
        self._all = _Times(window)
        self._live: set[Watched] = set()

    def observe(self, node: str | None, seconds: float, completion_tokens: int) -> None:
        """An answer of ``node`` took ``seconds`` to produce ``completion_tokens``."""
        if self._factor is None:
            return
        self._seen.setdefault(node or "", _Times(self._window)).add(seconds, completion_tokens)
        self._all.add(seconds, completion_tokens)
        if len(self._all.seen) >= self._min:
            for watched in list(self._live):
                watched.bring_forward(
                    self.deadline(watched.node, watched.max_tokens, watched.default_s)
                )

    def deadline(self, node: str | None, max_tokens: int | None, default: float) -> float:
        """Seconds a first attempt of ``node`` asking for ``max_tokens`` may take."""
        times = self._seen.get(node or "")
        if times is None or len(times.seen) < self._min:
            times = self._all
        if self._factor is None or len(times.seen) < self._min:
            return default
        seconds, per_token = times.p99()
        slowest = max(seconds, per_token * max_tokens) if max_tokens else seconds
        return min(default, max(self._floor, self._factor * slowest))

    @contextlib.contextmanager
    def watching(
        self, node: str | None, max_tokens: int | None, default: float, scope: asyncio.Timeout
    ) -> Iterator[Watched]:
        """Around a first attempt under ``scope`` (its ``asyncio.timeout``, set to ``default``):
        the deadline is brought forward now and as answers arrive, when they allow."""
        watched = Watched(node, max_tokens, default, scope)
        watched.bring_forward(self.deadline(node, max_tokens, default))
        if self._factor is not None:
            self._live.add(watched)
        try:
            yield watched
        finally:
            self._live.discard(watched)
