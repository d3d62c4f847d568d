"""Expected answer lengths per node, so a call asks for the output tokens it needs."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["OutputSizer"]


@dataclass
class _Seen:
    """Running sums over answers: ``count`` answers of ``units`` units in all, ``tokens``
    tokens in all, and the sum of tokens² / units (for the spread)."""

    count: int = 0
    units: int = 0
    tokens: int = 0
    square: float = 0.0

    def add(self, units: int, tokens: int) -> None:
        self.count += 1
        self.units += units
        self.tokens += tokens
        self.square += tokens * tokens / units

    def mean(self) -> float:
        """Mean tokens per unit."""
        return self.tokens / self.units

    def variance(self, prior_cv: float, weight: float) -> float:
        """Variance of one unit's tokens, taking an answer of ``n`` units as ``n``
        independent units (its mean ``n`` times the unit's, its variance too), shrunk toward
        a spread of ``prior_cv`` times the mean worth ``weight`` answers (so one or two
        answers, alike by chance, do not promise a narrow spread)."""
        mean = self.mean()
        own = max(0.0, self.square - 2 * mean * self.tokens + mean * mean * self.units)
        return (own + weight * (prior_cv * mean) ** 2) / (self.count - 1 + weight)


class OutputSizer:
    """How long a node's answers are, learned from the run's own answers.

    Packing reserves the worst case (``max_tokens``) in the window, but a provider charges
    its tokens-per-minute quota on ``max_tokens`` too, so a call asks only for what an answer
    of its node and size needs; the gateway asks again with the whole cap when an answer is
    cut off (rare, but it costs a second prompt). Callers ask late (when the gateway admits
    the call), so a call that waited for capacity is sized with every answer seen by then.

    An answer of ``n`` units (items, proposals) is expected within
    ``n * mean + Z * sd * sqrt(n + n² / seen)`` tokens: ``mean`` the tokens per unit of the
    node's answers (of answers of exactly ``n`` units once ``SAME_SIZE`` of them are known),
    ``sd`` the spread of one unit's tokens, shrunk toward ``PRIOR_CV`` times the mean while
    few answers are known, ``seen`` the units those answers had (the ``n² / seen`` term is
    the doubt about the mean itself). Before any answer and with no prior: the whole cap.

    The first answers to come back are the shortest of the calls sent together (an answer
    takes longer the longer it is), so counting answers as they arrive understates the mean.
    Answers of calls made through :meth:`call` count in the order the calls began: each once
    every call of its node begun before it has answered or ended, so the answers counted are
    always those of the first calls, whatever their length. And until ``MIN_SEEN`` answers
    count, the ask is at least a blend of the fit and the caller's ``prior`` (tokens per
    unit, with ``HEADROOM``), the prior's weight falling from 1 to 0 answer by answer.
    """

    HEADROOM = 1.3
    PAD = 32
    Z = 2.5
    PRIOR_CV = 0.35
    PRIOR_WEIGHT = 4.0
    SAME_SIZE = 12
    MIN_SEEN = 8

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._sized: dict[tuple[str, int], _Seen] = {}
        self._order = itertools.count()
        self._open: dict[str, set[int]] = {}
        self._held: dict[str, list[tuple[int, int, int]]] = {}

    @contextlib.contextmanager
    def call(self, node: str) -> Iterator[Callable[[int, int], None]]:
        """Around one call of ``node``: yields ``answered(units, tokens)``, to be called with
        its answer, which then counts once every call of ``node`` begun before this one has
        answered or ended (a call that fails just ends)."""
        number = next(self._order)
        self._open.setdefault(node, set()).add(number)

        def answered(units: int, tokens: int) -> None:
            heapq.heappush(self._held.setdefault(node, []), (number, units, tokens))

        try:
            yield answered
        finally:
            self._open[node].discard(number)
            held, first_open = self._held.get(node, []), min(self._open[node], default=None)
            while held and (first_open is None or held[0][0] < first_open):
                _, units, tokens = heapq.heappop(held)
                self.observe(node, units, tokens)

    def expect(self, node: str, units: int, cap: int, prior: float | None = None) -> int:
        n = max(1, units)
        seen = self._seen.get(node)
        floor = 0.0 if prior is None else prior * n * self.HEADROOM
        if seen is None:
            return cap if prior is None else min(cap, math.ceil(floor) + self.PAD)
        trust = min(1.0, seen.count / self.MIN_SEEN)
        same = self._sized.get((node, n))
        if same is not None and same.count >= self.SAME_SIZE:
            seen = same
        sd = math.sqrt(seen.variance(self.PRIOR_CV, self.PRIOR_WEIGHT))
        want = n * seen.mean() + self.Z * sd * math.sqrt(n + n * n / seen.units)
        want = max(want, (1 - trust) * floor + trust * want)
        return min(cap, math.ceil(want) + self.PAD)

    def observe(self, node: str, units: int, tokens: int) -> None:
        """An answer of ``node`` with ``units`` units took ``tokens`` tokens (the answer's
        own: not counting an attempt cut short before it); it counts now (see :meth:`call`
        for answers of calls in flight together)."""
        n = max(1, units)
        self._seen.setdefault(node, _Seen()).add(n, tokens)
        self._sized.setdefault((node, n), _Seen()).add(n, tokens)
