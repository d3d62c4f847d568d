"""The LLM gateway's limits, as pure logic: the adaptive concurrency limiter (slow start,
cuts, learned ceiling, FIFO admission) and the rate budgets fitted from rate headers."""

from __future__ import annotations

import asyncio
import random
import time

import openai
import pytest

from proposals.llm._attempts import AttemptLoop
from proposals.llm._limiter import AdaptiveLimiter, LimiterTicket
from proposals.llm._ratelimit import RateBudget, parse_duration
from proposals.llm._retry import Failure, RetryPolicy

# --- limiter --------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _fill(limiter: AdaptiveLimiter) -> list[LimiterTicket]:
    return [await limiter.acquire() for _ in range(limiter.limit)]


async def test_slow_start_doubles_per_window_then_cut_once_per_window() -> None:
    limiter = AdaptiveLimiter(minimum=2, maximum=1000, start=10, decrease_factor=0.5)
    tickets = await _fill(limiter)
    for ticket in tickets:
        limiter.release(ticket)
        limiter.on_success(ticket)
    assert 18 <= limiter.limit <= 20  # about doubled in one window
    tickets = await _fill(limiter)
    # Many failures from the same window cut once.
    for ticket in tickets[:5]:
        limiter.release(ticket)
        limiter.on_overload(ticket, capacity=False)
    assert limiter.limit == pytest.approx(tickets_limit := len(tickets) * 0.5, abs=1)
    assert limiter.cuts == 1
    for ticket in tickets[5:]:
        limiter.release(ticket)
    # A call admitted after the cut may cut again.
    fresh = await limiter.acquire()
    limiter.release(fresh)
    assert limiter.on_overload(fresh, capacity=False)
    assert limiter.limit == pytest.approx(tickets_limit * 0.5, abs=1)


async def test_additive_increase_after_a_cut_and_floor() -> None:
    limiter = AdaptiveLimiter(minimum=4, maximum=100, start=10, decrease_factor=0.5)
    ticket = await limiter.acquire()
    limiter.release(ticket)
    limiter.on_overload(ticket, capacity=False)
    assert limiter.limit == 5
    for _ in range(3):  # three limits' worth of saturated successes: +3 at most
        for t in await _fill(limiter):
            limiter.release(t)
            limiter.on_success(t)
    assert 6 <= limiter.limit <= 8
    for _ in range(10):
        t = await limiter.acquire()
        limiter.release(t)
        limiter.on_overload(t, capacity=False)
    assert limiter.limit == 4


async def test_capacity_signal_teaches_a_ceiling_and_clamps() -> None:
    limiter = AdaptiveLimiter(minimum=1, maximum=500, start=200, ceiling_margin=1.0)
    tickets = await _fill(limiter)
    # The provider holds 100: calls beyond are refused while 100 others are in flight.
    refused = tickets[100:]
    for ticket in refused:
        limiter.release(ticket)
        limiter.on_overload(ticket, capacity=True)
    assert limiter.ceiling == 100
    assert limiter.limit <= 100
    for ticket in tickets[:100]:
        limiter.release(ticket)
        limiter.on_success(ticket)
    # Quick regrowth stops at the ceiling; probing above it is slow.
    for _ in range(3):
        for t in await _fill(limiter):
            limiter.release(t)
            limiter.on_success(t)
    assert 100 <= limiter.limit <= 101
    assert limiter.peak_since_first_cut <= 101


async def test_scattered_resets_teach_no_ceiling() -> None:
    # A flaky network: one connection in twenty is reset at random, whatever the load.
    limiter = AdaptiveLimiter(minimum=1, maximum=500, start=40, ceiling_margin=1.0)
    for round_ in range(30):
        tickets = await _fill(limiter)
        for i, ticket in enumerate(tickets):
            limiter.release(ticket)
            if (i + round_) % 20 == 0:
                limiter.on_overload(ticket, capacity=True)
            else:
                limiter.on_success(ticket)
    assert limiter.ceiling is None
    assert limiter.limit > 4  # cuts, but the limit regrows: no ceiling holds it down
    # A few resets back to back among successes are still no burst (refusals outnumbering
    # the successes around them are: see the test above).
    tickets = await _fill(limiter)
    for ticket in tickets[-3:]:
        limiter.release(ticket)
        limiter.on_overload(ticket, capacity=True)
    assert limiter.ceiling is None


async def test_successes_admitted_before_a_cut_do_not_regrow_the_limit() -> None:
    limiter = AdaptiveLimiter(minimum=1, maximum=1000, start=100, decrease_factor=0.5)
    tickets = await _fill(limiter)
    limiter.release(tickets[0])
    limiter.on_overload(tickets[0], capacity=False)
    assert limiter.limit == 50
    # The other 99 calls of the old window drain with success: no growth from them.
    for ticket in tickets[1:]:
        limiter.release(ticket)
        limiter.on_success(ticket)
    assert limiter.limit == 50
    # Calls admitted after the cut grow it again (additively: +1 per limit's worth).
    for _ in range(2):
        for ticket in await _fill(limiter):
            limiter.release(ticket)
            limiter.on_success(ticket)
    assert limiter.limit >= 51


async def test_waiters_are_fifo_and_cancellation_returns_the_slot() -> None:
    limiter = AdaptiveLimiter(minimum=1, maximum=1, start=1)
    first = await limiter.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        ticket = await limiter.acquire()
        order.append(i)
        limiter.release(ticket)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(wait(i)) for i in range(4)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        await asyncio.sleep(0)
        limiter.release(first)
    assert order == [0, 2, 3]
    assert limiter.in_flight == 0


def test_hint_only_during_slow_start() -> None:
    limiter = AdaptiveLimiter(minimum=1, maximum=300, start=16)
    limiter.hint(1000)
    assert limiter.limit == 300
    limiter.on_overload(LimiterTicket(0, 300, True, 0.0), capacity=False)
    cut = limiter.limit
    limiter.hint(1000)
    assert limiter.limit == cut


async def test_calls_admitted_while_the_cut_episode_drains_are_not_the_peak_after_it() -> None:
    """The peak after the first cut is the concurrency the limiter chose once the calls
    admitted before the cut had ended: while they drain (answers, more refusals of the same
    episode still arriving; slow to come on a busy machine), in-flight counts include them."""
    limiter = AdaptiveLimiter(minimum=1, maximum=500, start=300, ceiling_margin=1.0)
    tickets = await _fill(limiter)
    for ticket in tickets[100:]:  # the provider holds 100 and refuses the rest
        limiter.release(ticket)
        limiter.on_overload(ticket, capacity=True)
    assert limiter.cuts == 1 and limiter.ceiling == 100
    for ticket in tickets[:40]:  # answers of the episode arrive: room under the ceiling
        limiter.release(ticket)
        limiter.on_success(ticket)
    during = [await limiter.acquire() for _ in range(limiter.limit - limiter.in_flight)]
    assert limiter.in_flight == 100 and limiter.peak_since_first_cut == 0
    for ticket in tickets[40:100] + during:  # the episode is over
        limiter.release(ticket)
        limiter.on_success(ticket)
    after = await _fill(limiter)
    assert limiter.peak_since_first_cut == len(after) <= 101


# --- rate budgets ---------------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1.5s") == pytest.approx(1.5)
    assert parse_duration("6m0s") == pytest.approx(360)
    assert parse_duration("1h2m3s") == pytest.approx(3723)
    assert parse_duration("2") == pytest.approx(2)
    assert parse_duration("soon") is None
    assert parse_duration(None) is None


def _headers(limit: int, remaining: float, reset_s: float, kind: str = "requests") -> dict:
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(int(remaining)),
        f"x-ratelimit-reset-{kind}": f"{int(reset_s * 1000)}ms",
    }


def test_refill_rate_and_capacity_are_fitted_from_headers() -> None:
    """A provider whose "minute" is compressed: its headers still reveal its true clock."""
    clock = _Clock()
    budget = RateBudget(clock=clock)
    capacity, rate = 300.0, 250.0  # per wall second, unrelated to limit/60
    for remaining in (290, 250, 200, 150, 120, 60, 30):
        clock.now += 0.01
        budget.observe(_headers(1800, remaining, (capacity - remaining) / rate))
    info = budget.describe()
    assert budget.rpm == 1800
    assert info["requests_per_s"] == pytest.approx(rate, rel=0.05)
    assert info["requests_capacity"] == pytest.approx(capacity, rel=0.05)


def test_configured_limit_is_an_upper_bound_and_remaining_sets_the_level() -> None:
    clock = _Clock()
    budget = RateBudget(rpm=600, clock=clock)
    budget.observe(_headers(10_000, 3, 1.0))
    assert budget.rpm == 600
    # 3 left at the provider, minus a margin of 1% of the bucket (600 x 10 s / 60 s = 100).
    assert budget.available(1) == 2


async def test_a_size_decided_late_is_asked_each_time_the_budget_is_checked() -> None:
    """A call sized by a function (``expected_tokens`` decided at admission) takes what the
    function says when the budget admits it, not what it said when the call queued."""
    budget = RateBudget(tpm=6000, window_s=1.0, burst_s=0.1)  # 6000 a second, bucket of 600
    budget.dispatched(await budget.acquire(600))  # empty
    sizes = iter([500, 50])  # queued at 500; by the time the budget is checked again, 50
    asked: list[int] = []

    def size() -> int:
        asked.append(next(sizes, 50))
        return asked[-1]

    permit = await budget.acquire(size)
    assert asked[:2] == [500, 50]
    assert permit.tokens == 50


async def test_acquire_waits_for_budget_and_pause_blocks_everyone() -> None:
    budget = RateBudget(rpm=600, window_s=1.0, burst_s=0.01)  # 600 per second, burst of 6
    start = time.monotonic()
    for _ in range(12):
        budget.dispatched(await budget.acquire(1))
    assert time.monotonic() - start >= 0.008  # the second six had to wait for refill
    budget.pause(0.05)
    start = time.monotonic()
    budget.dispatched(await budget.acquire(1))
    assert time.monotonic() - start >= 0.045


def _loop(rate: RateBudget) -> AttemptLoop:
    """An attempt loop whose admission (budget, then slot) is exercised without sending."""
    client = openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    limiter = AdaptiveLimiter(minimum=1, maximum=300, start=2)
    return AttemptLoop(client, limiter, rate, RetryPolicy(), random.Random(0), print)


async def test_calls_the_rate_budget_admits_get_slots_in_slow_start() -> None:
    """In slow start a call the known budget has room for gets a slot at once: a first wave
    of long calls is not held to the limit the last answer's hint allowed while the budget
    its calls were granted goes unused. With no limit known, slow start still bounds it."""

    known = _loop(RateBudget(tpm=600_000, window_s=60.0, burst_s=10.0))  # 100,000 at once
    calls = [asyncio.ensure_future(known._admit(1_000)) for _ in range(20)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(c.done() for c in calls)
    assert known._limiter.in_flight == 20 and known._limiter.limit >= 20

    unknown = _loop(RateBudget())
    first = [await unknown._admit(1_000) for _ in range(2)]
    third = asyncio.ensure_future(unknown._admit(1_000))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done()  # slow start's 2 slots are taken; no budget says more may go
    unknown._limiter.release(first[0][0])
    await third


async def test_a_429_cuts_calls_in_flight_only_when_no_rate_limit_is_known() -> None:
    """A 429 pauses every call for its retry-after. When the budget knows the limits, that
    pause and the budget pace the calls; cutting the concurrency limit as well would starve a
    tokens-per-minute quota of long calls. Without known limits the cut is the only brake."""
    refused = Failure(
        "retry", "rate_limit", "tokens per min", status=429, retry_after=0.5, overload=True
    )
    for rate, cut in ((RateBudget(tpm=600_000), False), (RateBudget(), True)):
        attempts = _loop(rate)
        ticket, _ = await attempts._admit(1_000)
        before = attempts._limiter.limit
        assert attempts._on_failure(refused, ticket, attempt=1) is not None  # retried
        assert (attempts._limiter.limit < before) is cut
        assert rate.active  # paused: nobody starts before the retry-after
