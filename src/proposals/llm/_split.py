"""Split-on-overflow: the one way a caller recovers from a request the server finds too long.

Packing (:func:`~proposals.llm.pack`) sizes calls with a local token count; the server's count
may still differ. :func:`call_splitting` calls once with every item and, on
:class:`ContextOverflowError`, halves the group and tries each half; a lone item that still
overflows goes through the caller's ``shrink`` hook once (drop part of its material), or is
reported failed. Other provider errors fail that group only; a budget stop is raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import BudgetExceeded, ProposalsError, ProviderError
from ._errors import ContextOverflowError

__all__ = ["Outcome", "call_splitting"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class Outcome(Generic[T, R]):
    """What became of a group of items: a result, or the error that ended it."""

    items: list[T]
    result: R | None = None
    error: ProposalsError | None = None


async def call_splitting(
    items: list[T],
    attempt: Callable[[list[T]], Awaitable[R]],
    *,
    shrink: Callable[[T], T | None] | None = None,
) -> list[Outcome[T, R]]:
    """Call ``attempt(items)``; on context overflow split in half and try each half.

    A single item that still overflows is passed through ``shrink`` (e.g. fewer evidence
    chunks) once; when that returns ``None`` (or there is no hook) the item is returned as
    failed. Provider failures of a group are returned, not raised, so siblings go on.
    :class:`~proposals.errors.BudgetExceeded` is raised: it stops the whole run. Outcomes
    follow the order of ``items``.
    """
    try:
        return [Outcome(items, result=await attempt(items))]
    except BudgetExceeded:
        raise
    except ContextOverflowError as exc:
        if len(items) > 1:
            mid = len(items) // 2
            # Halves run one after the other: overflow is rare once packed, and a budget
            # stop in one half must not leave the other half running.
            first = await call_splitting(items[:mid], attempt, shrink=shrink)
            return first + await call_splitting(items[mid:], attempt, shrink=shrink)
        smaller = shrink(items[0]) if shrink is not None else None
        if smaller is not None:
            return await call_splitting([smaller], attempt, shrink=None)
        return [Outcome(items, error=exc)]
    except ProviderError as exc:
        return [Outcome(items, error=exc)]
