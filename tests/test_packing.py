"""Packing: greedy ordered batches under a token budget, and split-on-overflow mapping."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proposals.errors import BudgetExceeded, InputError
from proposals.llm import (
    ContextOverflowError,
    RetriesExhausted,
    map_packed,
    pack,
    request_budget,
    truncate_text,
)
from proposals.tokens import count_tokens

sizes = st.lists(st.integers(min_value=0, max_value=300), max_size=60)


def _sized(sizes: list[int]) -> list[tuple[int, int]]:
    """Items ``(index, size)`` so tests can see identity and order."""
    return list(enumerate(sizes))


def _shrink(item: tuple[int, int], budget: int) -> tuple[int, int]:
    return (item[0], min(item[1], budget))


@settings(max_examples=300, deadline=None)
@given(sizes=sizes, budget=st.integers(min_value=1, max_value=400))
def test_every_item_once_in_order_and_within_budget(sizes: list[int], budget: int) -> None:
    items = _sized(sizes)
    batches = pack(items, budget, lambda it: it[1], truncate=_shrink)
    flat = [it for b in batches for it in b.items]
    assert [it[0] for it in flat] == list(range(len(items)))
    assert [i for b in batches for i in b.indices] == list(range(len(items)))
    for batch in batches:
        assert batch.items, "no empty batch"
        assert batch.tokens == sum(it[1] for it in batch.items)
        assert batch.tokens <= budget
    truncated = {i for i, s in enumerate(sizes) if s > budget}
    warned = {int(w.split()[1]) for b in batches for w in b.warnings}
    assert warned == truncated


@settings(max_examples=200, deadline=None)
@given(sizes=sizes, budget=st.integers(min_value=1, max_value=400))
def test_greedy_batches_are_maximal(sizes: list[int], budget: int) -> None:
    """A batch is closed only when the next item would not fit."""
    batches = pack(_sized(sizes), budget, lambda it: it[1], truncate=_shrink)
    for current, following in itertools.pairwise(batches):
        assert current.tokens + following.items[0][1] > budget


@settings(max_examples=100, deadline=None)
@given(sizes=sizes, budget=st.integers(min_value=1, max_value=100))
def test_untruncatable_item_stands_alone_over_budget(sizes: list[int], budget: int) -> None:
    def refuse(item: tuple[int, int], limit: int) -> tuple[int, int]:
        raise InputError("cannot shorten")

    batches = pack(_sized(sizes), budget, lambda it: it[1], truncate=refuse)
    for batch in batches:
        if batch.tokens > budget:
            assert len(batch.items) == 1
            assert batch.warnings
    assert [i for b in batches for i in b.indices] == list(range(len(sizes)))


def test_strings_are_truncated_with_the_token_counter() -> None:
    long = "word " * 500
    batches = pack(["short one", long, "another"], 50)
    assert len(batches) == 3
    assert count_tokens(batches[1].items[0]) <= 50
    assert long.startswith(batches[1].items[0])
    assert "truncated" in batches[1].warnings[0]


def test_truncate_text_respects_a_count_with_overhead() -> None:
    def count(text: str) -> int:
        return count_tokens(text) + 7

    text = "alpha beta gamma delta " * 40
    short = truncate_text(text, 30, count)
    assert count(short) <= 30
    assert text.startswith(short)


def test_request_budget() -> None:
    assert request_budget(32_768, 1_000, 4_096) == 27_672
    with pytest.raises(InputError):
        request_budget(4_000, 3_000, 1_500)


def test_non_string_items_need_a_count() -> None:
    with pytest.raises(InputError):
        pack([{"a": 1}], 10)


# --- map_packed -----------------------------------------------------------------------------


def _overflowing_call(limit: int, calls: list[list[int]]):
    """A fake model call: rejects any batch whose tokens exceed ``limit``."""

    async def call(batch: list[int]) -> list[str]:
        calls.append(list(batch))
        await asyncio.sleep(0)
        if sum(batch) > limit:
            raise ContextOverflowError("maximum context length exceeded", status=400)
        return [f"r{x}" for x in batch]

    return call


async def test_map_packed_splits_overflowing_batches_and_answers_all() -> None:
    items = [10, 20, 30, 5, 15, 25, 40, 10]
    calls: list[list[int]] = []
    # The packer thinks 100 fit; the "server" accepts only 45.
    out = await map_packed(items, budget=100, count=lambda x: x, call=_overflowing_call(45, calls))
    assert out.results == [f"r{x}" for x in items]
    assert out.failures == []
    assert out.splits > 0
    assert any("split" in w for w in out.warnings)
    assert out.calls == len(calls)
    answered = [x for c in calls if sum(c) <= 45 for x in c]
    assert sorted(answered) == sorted(items)


async def test_single_item_overflow_is_truncated_then_failed() -> None:
    calls: list[list[str]] = []

    async def call(batch: list[str]) -> list[str]:
        calls.append(batch)
        if any(len(x) > 8 for x in batch):
            raise ContextOverflowError("too long", status=400)
        return [x.upper() for x in batch]

    def count(x: str) -> int:
        return len(x)

    def cut(x: str, n: int) -> str:
        return x[:n]

    out = await map_packed(
        ["abc", "0123456789AB", "x" * 40], budget=100, count=count, call=call, truncate=cut
    )
    # 12 chars halves to 6 and then fits; 40 chars halves to 20 and still overflows.
    assert out.results == ["ABC", "012345", None]
    assert [(f.index, f.error_type) for f in out.failures] == [(2, "ContextOverflowError")]
    assert any("item 1 overflowed" in w for w in out.warnings)


async def test_provider_failure_fails_only_that_batch() -> None:
    async def call(batch: list[str]) -> list[str]:
        if "bad" in batch:
            raise RetriesExhausted("down", attempts=3, cause="connection")
        return batch

    out = await map_packed(["a", "b", "bad", "c", "d"], budget=2, count=lambda _: 1, call=call)
    # Batches: [a, b] [bad, c] [d]; only the second fails, and both its items are reported.
    assert out.results == ["a", "b", None, None, "d"]
    assert [(f.index, f.error_type) for f in out.failures] == [
        (2, "RetriesExhausted"),
        (3, "RetriesExhausted"),
    ]
    assert not out.ok


async def test_wrong_number_of_results_is_a_failure_not_a_silent_drop() -> None:
    async def call(batch: list[str]) -> list[str]:
        return batch[:-1]

    out = await map_packed(["a", "b", "c"], budget=10, count=lambda _: 1, call=call)
    assert out.results == [None, None, None]
    assert [f.index for f in out.failures] == [0, 1, 2]


async def test_budget_exceeded_stops_the_work() -> None:
    async def call(batch: list[str]) -> list[str]:
        raise BudgetExceeded("no more tokens")

    with pytest.raises(BudgetExceeded):
        await map_packed(["a", "b", "c"], budget=1, count=lambda _: 1, call=call)
