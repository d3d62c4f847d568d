"""Packing (greedy ordered batches under a token budget) and split-on-overflow
(:func:`proposals.llm.call_splitting`, the path the pipeline's nodes run)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proposals.errors import BudgetExceeded, InputError
from proposals.llm import ContextOverflowError, RetriesExhausted, call_splitting, pack

sizes = st.lists(st.integers(min_value=0, max_value=300), max_size=60)


def _sized(sizes: list[int]) -> list[tuple[int, int]]:
    """Items ``(index, size)`` so tests can see identity and order."""
    return list(enumerate(sizes))


@settings(max_examples=300, deadline=None)
@given(sizes=sizes, budget=st.integers(min_value=1, max_value=400))
def test_every_item_once_in_order_and_within_budget(sizes: list[int], budget: int) -> None:
    items = _sized(sizes)
    batches = pack(items, budget, lambda it: it[1])
    flat = [it for b in batches for it in b.items]
    assert [it[0] for it in flat] == list(range(len(items)))
    assert [i for b in batches for i in b.indices] == list(range(len(items)))
    for batch in batches:
        assert batch.items, "no empty batch"
        assert batch.tokens == sum(it[1] for it in batch.items)
        # Only an item larger than the budget by itself may exceed it, and it stands alone.
        assert batch.tokens <= budget or len(batch.items) == 1


@settings(max_examples=200, deadline=None)
@given(sizes=sizes, budget=st.integers(min_value=1, max_value=400))
def test_greedy_batches_are_maximal(sizes: list[int], budget: int) -> None:
    """A batch is closed only when the next item would not fit."""
    batches = pack(_sized(sizes), budget, lambda it: it[1])
    for current, following in itertools.pairwise(batches):
        assert current.tokens + following.items[0][1] > budget


def test_non_string_items_need_a_count() -> None:
    with pytest.raises(InputError):
        pack([{"a": 1}], 10)
    with pytest.raises(InputError):
        pack(["a"], 0)


# --- call_splitting --------------------------------------------------------------------------


def _overflowing(limit: int, calls: list[list[int]]):  # type: ignore[no-untyped-def]
    """A fake model call: rejects any group whose tokens exceed ``limit``."""

    async def attempt(group: list[int]) -> list[str]:
        calls.append(list(group))
        if sum(group) > limit:
            raise ContextOverflowError("maximum context length exceeded", status=400)
        return [f"r{x}" for x in group]

    return attempt


async def test_overflowing_groups_are_halved_until_every_item_is_answered() -> None:
    items = [10, 20, 30, 5, 15, 25, 40, 10]
    calls: list[list[int]] = []
    # The packer thought 155 tokens fit; the "server" accepts only 45.
    outcomes = await call_splitting(items, _overflowing(45, calls))
    assert all(o.error is None for o in outcomes)
    assert [x for o in outcomes for x in o.items] == items  # input order kept
    assert [r for o in outcomes for r in o.result or []] == [f"r{x}" for x in items]
    # Halves run one after the other, depth first: the first call had everything.
    assert calls[0] == items and calls[1] == items[:4]
    assert all(sum(c) <= 45 for c in calls if c in [o.items for o in outcomes])


async def test_a_lone_overflowing_item_is_shrunk_once_then_failed() -> None:
    calls: list[list[str]] = []
    shrunk: list[str] = []

    async def attempt(group: list[str]) -> list[str]:
        calls.append(group)
        if any(len(x) > 8 for x in group):
            raise ContextOverflowError("too long", status=400)
        return [x.upper() for x in group]

    def shrink(item: str) -> str | None:
        shrunk.append(item)
        return item[: len(item) // 2] if len(item) > 1 else None

    outcomes = await call_splitting(["abc", "0123456789AB", "x" * 40], attempt, shrink=shrink)
    # 12 chars halve to 6 and then fit; 40 halve to 20, still overflow, and are not shrunk again.
    assert [(o.items, o.result, type(o.error).__name__) for o in outcomes] == [
        (["abc"], ["ABC"], "NoneType"),
        (["012345"], ["012345"], "NoneType"),
        (["x" * 20], None, "ContextOverflowError"),
    ]
    assert shrunk == ["0123456789AB", "x" * 40]


async def test_without_a_shrink_hook_a_lone_item_fails() -> None:
    outcomes = await call_splitting([99], _overflowing(10, []))
    assert len(outcomes) == 1 and isinstance(outcomes[0].error, ContextOverflowError)


async def test_a_provider_failure_fails_only_that_group() -> None:
    async def attempt(group: list[str]) -> list[str]:
        if len(group) > 2:
            raise ContextOverflowError("too long", status=400)
        if "bad" in group:
            raise RetriesExhausted("down", attempts=3, cause="connection")
        return group

    outcomes = await call_splitting(["a", "b", "bad", "c"], attempt)
    assert [(o.items, o.result, type(o.error).__name__) for o in outcomes] == [
        (["a", "b"], ["a", "b"], "NoneType"),
        (["bad", "c"], None, "RetriesExhausted"),
    ]


async def test_budget_exceeded_stops_the_work() -> None:
    calls: list[list[str]] = []

    async def attempt(group: list[str]) -> list[str]:
        calls.append(group)
        if len(group) > 1:
            raise ContextOverflowError("too long", status=400)
        raise BudgetExceeded("no more tokens")

    with pytest.raises(BudgetExceeded):
        await call_splitting(["a", "b", "c"], attempt)
    # The first half hit the budget; the second half was never sent.
    assert calls == [["a", "b", "c"], ["a"]]
