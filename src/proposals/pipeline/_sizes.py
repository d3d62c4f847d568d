"""Expected answer lengths per node, so a call asks for the output tokens it needs."""

from __future__ import annotations

import math

__all__ = ["OutputSizer"]


class OutputSizer:
    """How long a node's answers are, learned from the run's own answers.

    Packing reserves the worst case (``max_tokens``) in the window, but a provider charges
    its tokens-per-minute quota on ``max_tokens`` too, so a call asks only for what answers of
    its node have needed per unit (item, proposal) so far, with headroom; the gateway asks
    again with the whole cap when an answer is cut off. Before a node's first answer, a
    caller's ``prior`` per unit stands in (none: the whole cap).
    """

    HEADROOM = 1.3
    PAD = 64

    def __init__(self) -> None:
        self._per_unit: dict[str, float] = {}

    def expect(self, node: str, units: int, cap: int, prior: float | None = None) -> int:
        per_unit = self._per_unit.get(node, prior)
        if per_unit is None:
            return cap
        return min(cap, math.ceil(per_unit * max(1, units) * self.HEADROOM) + self.PAD)

    def observe(self, node: str, units: int, tokens: int) -> None:
        per_unit = tokens / max(1, units)
        self._per_unit[node] = max(self._per_unit.get(node, 0.0), per_unit)
