"""Ranking metrics over one ranked list, with binary relevance.

A question names *targets* (chunks, documents, sections); a hit is relevant when it belongs to
at least one target. Recall counts targets reached, precision and nDCG count relevant hits,
so a question whose target is a whole document is answered by any one of its chunks for
recall, while precision and nDCG still reward filling the list with that document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set

__all__ = ["ndcg_at_k", "precision_at_k", "recall_at_k", "reciprocal_rank"]


def recall_at_k(hit_targets: Sequence[Set[str]], n_targets: int, k: int) -> float:
    """Share of the ``n_targets`` targets reached by the first ``k`` hits; ``hit_targets[i]``
    is the set of targets hit ``i`` belongs to (empty: not relevant)."""
    if n_targets <= 0:
        return 0.0
    reached: set[str] = set()
    for targets in hit_targets[:k]:
        reached |= targets
    return len(reached) / n_targets


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Relevant hits among the first ``k``, divided by ``k`` (a short list is not excused)."""
    if k <= 0:
        return 0.0
    return sum(1 for r in relevant[:k] if r) / k


def reciprocal_rank(relevant: Sequence[bool], k: int) -> float:
    """``1 / rank`` of the first relevant hit within the first ``k``; 0 when there is none."""
    for i, r in enumerate(relevant[:k]):
        if r:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at_k(relevant: Sequence[bool], n_relevant: int, k: int) -> float:
    """Normalised discounted cumulative gain with binary gains: DCG of the list over the DCG
    of an ideal list holding ``min(k, n_relevant)`` relevant hits on top."""
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    if ideal == 0:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(relevant[:k]) if r)
    return dcg / ideal
