"""Stalled requests: a first attempt's deadline learned from how long answers take."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["StallWatch"]


class StallWatch:
    """How long answers take, per node, so a first attempt that has waited far longer than
    answers of its kind do is given up and sent again, instead of waiting out the whole
    attempt deadline.

    Providers now and then accept a request and never answer it (a stalled connection); with
    a fixed deadline each such request costs all of it, on the critical path when it is one of
    the last. Once ``min_samples`` answers of a node are known, a first attempt asking for
    ``max_tokens`` gets ``factor`` times the 99th percentile of their durations, each scaled
    up to ``max_tokens`` when it produced fewer tokens (an answer's time grows with its
    length), never less than ``floor_s`` and never more than the configured deadline. Retries
    keep the configured deadline, so a provider that merely slowed down still answers.
    """

    def __init__(
        self,
        factor: float | None,
        *,
        min_samples: int = 20,
        window: int = 200,
        floor_s: float = 2.0,
    ) -> None:
        self._factor = factor
        self._min = min_samples
        self._floor = floor_s
        self._window = window
        self._seen: dict[str, deque[tuple[float, int]]] = {}

    def observe(self, node: str | None, seconds: float, completion_tokens: int) -> None:
        """An answer of ``node`` took ``seconds`` to produce ``completion_tokens``."""
        if self._factor is not None:
            seen = self._seen.setdefault(node or "", deque(maxlen=self._window))
            seen.append((seconds, max(1, completion_tokens)))

    def deadline(self, node: str | None, max_tokens: int | None, default: float) -> float:
        """Seconds a first attempt of ``node`` asking for ``max_tokens`` may take."""
        seen = self._seen.get(node or "")
        if self._factor is None or seen is None or len(seen) < self._min:
            return default
        scaled = sorted(s * max(1.0, (max_tokens or tokens) / tokens) for s, tokens in seen)
        p99 = scaled[min(len(scaled) - 1, math.ceil(0.99 * len(scaled)) - 1)]
        return min(default, max(self._floor, self._factor * p99))
