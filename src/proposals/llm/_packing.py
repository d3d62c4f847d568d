"""Packing items into token-budgeted batches, and mapping a call over them.

The context window decides how items are grouped; the gateway decides how many calls are in
flight (DESIGN decision 1). ``pack`` is greedy and order-keeping: each item lands in exactly
one batch, batches follow the input order, and no batch exceeds the budget unless it holds a
single item that could not be truncated below it. ``map_packed`` calls the model per batch and,
when the server still says a batch is too long, splits it in half and tries each half.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import BudgetExceeded, InputError, ProposalsError
from ..tokens import count_tokens, truncate_to_tokens
from ._errors import ContextOverflowError

__all__ = [
    "Batch",
    "ItemFailure",
    "PackedResults",
    "map_packed",
    "pack",
    "request_budget",
    "truncate_text",
]

T = TypeVar("T")
R = TypeVar("R")

Count = Callable[[Any], int]
Truncate = Callable[[Any, int], Any]


def request_budget(window: int, prompt_tokens: int, output_reserve: int) -> int:
    """Tokens left for packed items: ``window - prompt_tokens - output_reserve``.

    Raises :class:`~proposals.errors.InputError` when nothing is left, since then no item
    can ever be sent.
    """
    budget = window - prompt_tokens - output_reserve
    if budget <= 0:
        raise InputError(
            f"no room for items: context window {window} - prompt {prompt_tokens} - "
            f"output reserve {output_reserve} = {budget} tokens"
        )
    return budget


def truncate_text(text: str, max_tokens: int, count: Count | None = None) -> str:
    """The longest prefix of ``text`` that ``count`` (default: token count) puts within
    ``max_tokens``."""
    count = count or count_tokens
    target = max_tokens
    candidate = truncate_to_tokens(text, max(0, target))
    for _ in range(16):  # a count with per-item overhead needs a few steps down
        excess = count(candidate) - max_tokens
        if excess <= 0 or target <= 0:
            break
        target -= max(1, excess)
        candidate = truncate_to_tokens(text, max(0, target))
    return candidate


def _count_default(item: Any) -> int:
    if isinstance(item, str):
        return count_tokens(item)
    raise InputError("pack needs a count function for items that are not strings")


def _truncator(truncate: Truncate | None, count: Count) -> Truncate:
    if truncate is not None:
        return truncate

    def default(item: Any, max_tokens: int) -> Any:
        if not isinstance(item, str):
            raise InputError("no truncate function given for items that are not strings")
        return truncate_text(item, max_tokens, count)

    return default


@dataclass(slots=True)
class Batch(Generic[T]):
    """Consecutive items sent in one call."""

    items: list[T]
    indices: list[int]
    """Position of each item in the input."""
    tokens: int
    """Sum of the items' counts."""
    warnings: list[str] = field(default_factory=list)
    """Things the caller should record (e.g. an item truncated to fit)."""


def pack(
    items: Sequence[T],
    budget: int,
    count: Callable[[T], int] | None = None,
    *,
    truncate: Callable[[T, int], T] | None = None,
) -> list[Batch[T]]:
    """Group ``items`` in order into batches whose token counts stay within ``budget``.

    ``count(item)`` gives an item's tokens as it will appear in the prompt (default: token
    count of a string). An item larger than ``budget`` alone is replaced by
    ``truncate(item, budget)`` (default: prefix truncation of strings) and the batch records a
    warning.
    """
    if budget <= 0:
        raise InputError(f"packing budget must be positive, got {budget}")
    count_fn: Count = count or _count_default
    cut = _truncator(truncate, count_fn)
    batches: list[Batch[T]] = []
    current: Batch[T] | None = None
    for index, item in enumerate(items):
        size = count_fn(item)
        note: str | None = None
        if size > budget:
            try:
                smaller = cut(item, budget)
            except InputError as exc:
                smaller, note = (
                    item,
                    f"item {index}: {size} tokens exceed the budget of {budget}: {exc}",
                )
            else:
                new_size = count_fn(smaller)
                note = f"item {index} truncated from {size} to {new_size} tokens (budget {budget})"
                item, size = smaller, new_size
        if current is not None and current.tokens + size > budget:
            batches.append(current)
            current = None
        if current is None:
            current = Batch(items=[], indices=[], tokens=0)
        current.items.append(item)
        current.indices.append(index)
        current.tokens += size
        if note:
            current.warnings.append(note)
    if current is not None:
        batches.append(current)
    return batches


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """An item that got no result, and why."""

    index: int
    error: str
    error_type: str


@dataclass(slots=True)
class PackedResults(Generic[R]):
    """What :func:`map_packed` produced: one slot per input item, in input order."""

    results: list[R | None]
    """Result of each item; ``None`` for the failed ones (see ``failures``)."""
    warnings: list[str] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    calls: int = 0
    """Calls made (splits and retries of truncated items included)."""
    splits: int = 0
    """Batches split in half after a context overflow."""

    @property
    def ok(self) -> bool:
        return not self.failures


async def map_packed(
    items: Sequence[T],
    *,
    budget: int,
    call: Callable[[list[T]], Awaitable[Sequence[R]]],
    count: Callable[[T], int] | None = None,
    truncate: Callable[[T, int], T] | None = None,
) -> PackedResults[R]:
    """Pack ``items`` under ``budget`` and run ``call(batch_items)`` for every batch.

    ``call`` must return one result per item, in order. Batches run concurrently; how many
    calls are really in flight is decided by the LLM gateway, not here. A batch rejected with
    :class:`ContextOverflowError` is split in half and each half retried (recursively); a
    single item that still overflows is truncated to half its size once, and then recorded
    as failed. Other provider errors fail the batch's items and spare the rest.
    :class:`~proposals.errors.BudgetExceeded` stops the work: it is raised once every batch
    already running has ended.
    """
    count_fn: Count = count or _count_default
    cut = _truncator(truncate, count_fn)
    batches = pack(items, budget, count_fn, truncate=truncate)
    out: PackedResults[R] = PackedResults(results=[None] * len(items))
    for batch in batches:
        out.warnings.extend(batch.warnings)
    stop: list[BudgetExceeded] = []

    def fail(indices: list[int], exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        out.failures.extend(ItemFailure(i, message, type(exc).__name__) for i in indices)

    async def run(indices: list[int], chunk: list[T], shrunk: bool) -> None:
        if stop:
            fail(indices, stop[0])
            return
        out.calls += 1
        try:
            answers = list(await call(chunk))
        except ContextOverflowError as exc:
            if len(chunk) > 1:
                out.splits += 1
                half = len(chunk) // 2
                out.warnings.append(
                    f"items {indices[0]}..{indices[-1]} overflowed the context window; split in two"
                )
                async with asyncio.TaskGroup() as group:
                    group.create_task(run(indices[:half], chunk[:half], shrunk))
                    group.create_task(run(indices[half:], chunk[half:], shrunk))
                return
            if shrunk:
                fail(indices, exc)
                return
            size = count_fn(chunk[0])
            try:
                smaller = cut(chunk[0], max(1, size // 2))
            except InputError:
                fail(indices, exc)
                return
            out.warnings.append(
                f"item {indices[0]} overflowed the context window alone; truncated from "
                f"{size} to {count_fn(smaller)} tokens"
            )
            await run(indices, [smaller], True)
            return
        except BudgetExceeded as exc:
            stop.append(exc)
            fail(indices, exc)
            return
        except ProposalsError as exc:
            fail(indices, exc)
            return
        if len(answers) != len(chunk):
            fail(
                indices, InputError(f"call returned {len(answers)} results for {len(chunk)} items")
            )
            return
        for index, answer in zip(indices, answers, strict=True):
            out.results[index] = answer

    async with asyncio.TaskGroup() as group:
        for batch in batches:
            group.create_task(run(list(batch.indices), list(batch.items), False))
    if stop:
        raise stop[0]
    out.failures.sort(key=lambda f: f.index)
    return out
