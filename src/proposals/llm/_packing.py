"""Packing items into token-budgeted batches.

The context window decides how items are grouped; the gateway decides how many calls are in
flight. ``pack`` is greedy and order-keeping: each item lands in exactly
one batch, batches follow the input order, and no batch exceeds the budget unless it holds a
single item larger than the budget (callers make items fit first; see
:func:`~proposals.tokens.truncate_to_tokens`). When the server still finds a batch too long,
:func:`~proposals.llm.call_splitting` splits it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import InputError
from ..tokens import count_tokens

__all__ = ["Batch", "pack"]

T = TypeVar("T")


@dataclass(slots=True)
class Batch(Generic[T]):
    """Consecutive items sent in one call."""

    items: list[T]
    indices: list[int]
    """Position of each item in the input."""
    tokens: int
    """Sum of the items' counts."""


def _count_default(item: object) -> int:
    if isinstance(item, str):
        return count_tokens(item)
    raise InputError("pack needs a count function for items that are not strings")


def pack(
    items: Sequence[T], budget: int, count: Callable[[T], int] | None = None
) -> list[Batch[T]]:
    """Group ``items`` in order into batches whose token counts stay within ``budget``.

    ``count(item)`` gives an item's tokens as it will appear in the prompt (default: token
    count of a string). An item larger than ``budget`` gets a batch of its own.
    """
    if budget <= 0:
        raise InputError(f"packing budget must be positive, got {budget}")
    count_fn: Callable[[T], int] = count or _count_default
    batches: list[Batch[T]] = []
    current: Batch[T] | None = None
    for index, item in enumerate(items):
        size = count_fn(item)
        if current is not None and current.tokens + size > budget:
            batches.append(current)
            current = None
        if current is None:
            current = Batch(items=[], indices=[], tokens=0)
        current.items.append(item)
        current.indices.append(index)
        current.tokens += size
    if current is not None:
        batches.append(current)
    return batches
