"""Expected answer lengths per node, so a call asks for the output tokens it needs."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OutputSizer"]


@dataclass
class _Seen:
    """Running sums over a node's answers: ``count`` answers of ``units`` units in all,
    ``tokens`` tokens in all, and the sum of tokens² / units (for the spread)."""

    count: int = 0
    units: int = 0
    tokens: int = 0
    square: float = 0.0
    peak: float = 0.0
    """Most tokens per unit of one answer."""

    def add(self, units: int, tokens: int) -> None:
        self.count += 1
        self.units += units
        self.tokens += tokens
        self.square += tokens * tokens / units
        self.peak = max(self.peak, tokens / units)

    def fit(self) -> tuple[float, float]:
        """Mean tokens per unit, and the standard deviation of one unit's tokens, taking
        an answer of ``n`` units as ``n`` independent units (its mean ``n`` times the unit's,
        its variance too)."""
        mean = self.tokens / self.units
        spread = self.square - 2 * mean * self.tokens + mean * mean * self.units
        return mean, math.sqrt(max(0.0, spread) / (self.count - 1))


class OutputSizer:
    """How long a node's answers are, learned from the run's own answers.

    Packing reserves the worst case (``max_tokens``) in the window, but a provider charges
    its tokens-per-minute quota on ``max_tokens`` too, so a call asks only for what an answer
    of its node and size needs; the gateway asks again with the whole cap when an answer is
    cut off. Once ``MIN_SEEN`` answers of a node are known, an answer of ``n`` units (items,
    proposals) is expected within ``n * mean + Z * sd * sqrt(n)`` tokens, ``mean`` and ``sd``
    those of one unit's tokens in those answers (a cut answer is then rare: each costs a
    second call). Before that, the most tokens per unit seen so far, or the caller's ``prior`` if
    larger (few answers understate the spread), with ``HEADROOM``; no prior and no answer:
    the whole cap.
    """

    HEADROOM = 1.3
    PAD = 64
    MIN_SEEN = 8
    Z = 3.0

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def expect(self, node: str, units: int, cap: int, prior: float | None = None) -> int:
        n = max(1, units)
        seen = self._seen.get(node)
        if seen is not None and seen.count >= self.MIN_SEEN:
            mean, sd = seen.fit()
            want = n * mean + self.Z * sd * math.sqrt(n)
        else:
            candidates = [p for p in (prior, seen.peak if seen else None) if p is not None]
            if not candidates:
                return cap
            want = max(candidates) * n * self.HEADROOM
        return min(cap, math.ceil(want) + self.PAD)

    def observe(self, node: str, units: int, tokens: int) -> None:
        self._seen.setdefault(node, _Seen()).add(max(1, units), tokens)
