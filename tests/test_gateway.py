"""The LLM gateway: pure logic (retry policy, prices, budgets) and real HTTP against the
simulator on loopback. The limiter and rate budgets: ``test_gateway_limits.py``."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx2
import openai
import pytest
from pydantic import BaseModel, field_validator

from proposals.config import Settings
from proposals.errors import BudgetExceeded, ConfigError, ProviderError
from proposals.llm import (
    Budget,
    CallEvent,
    CallFinished,
    CallRetry,
    CallStarted,
    CallTags,
    ContextOverflowError,
    GatewayConfig,
    InvalidOutputError,
    LLMGateway,
    ModelPrice,
    NonRetryableError,
    ResponseCache,
    RetriesExhausted,
    Usage,
    call_splitting,
)
from proposals.llm._cache import request_key
from proposals.llm._output import json_schema_format
from proposals.llm._retry import Failure, RetryPolicy, classify, parse_retry_after
from proposals.llm._stall import StallWatch
from proposals.llm._usage import PriceTable
from proposals.simulator import run_simulator

TEXT = " ".join(
    f"Sentence {i} describes savings products for households in the region." for i in range(8)
)


def test_provider_errors_are_runtime_failures_users_can_catch_as_one() -> None:
    assert issubclass(NonRetryableError, ProviderError)
    assert issubclass(ContextOverflowError, NonRetryableError)
    assert issubclass(RetriesExhausted, ProviderError)


# --- retry policy ---------------------------------------------------------------------------


def _status_error(status: int, body: dict, headers: dict | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, json=body, request=request)
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }
    cls = classes.get(status, openai.InternalServerError)
    return cls(body.get("message", "error"), response=response, body=body)


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (429, {"code": "rate_limit_exceeded"}, "retry", "rate_limit"),
        (429, {"code": "insufficient_quota"}, "fatal", "insufficient_quota"),
        (400, {"code": "context_length_exceeded"}, "overflow", "context_overflow"),
        (
            400,
            {"message": "This model's maximum context length is 8192 tokens."},
            "overflow",
            "context_overflow",
        ),
        (400, {"message": "bad"}, "fatal", "bad_request"),
        (401, {}, "fatal", "authentication"),
        (403, {}, "fatal", "permission_denied"),
        (404, {}, "fatal", "not_found"),
        (422, {}, "fatal", "unprocessable"),
        (408, {}, "retry", "request_timeout"),
        (409, {}, "retry", "conflict"),
        (500, {}, "retry", "server_error_500"),
        (503, {}, "retry", "server_error_503"),
    ],
)
def test_classification(status: int, body: dict, kind: str, reason: str) -> None:
    failure = classify(_status_error(status, body))
    assert failure is not None
    assert (failure.kind, failure.reason) == (kind, reason)
    assert failure.overload == (status in (429, 503) and kind == "retry")


def test_connection_and_timeout_errors_are_capacity_signals() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    for exc in (openai.APIConnectionError(request=request), openai.APITimeoutError(request)):
        failure = classify(exc)
        assert failure is not None
        assert failure.kind == "retry" and failure.capacity and failure.overload
    assert classify(TimeoutError()).reason == "timeout"  # type: ignore[union-attr]
    assert classify(ValueError("a bug")) is None


def test_retry_after_headers() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert parse_retry_after({"retry-after": "3"}) == pytest.approx(3)
    when = email.utils.formatdate(1_000_060, usegmt=True)
    assert parse_retry_after({"retry-after": when}, now=1_000_000) == pytest.approx(60)
    assert parse_retry_after({}) is None
    failure = classify(_status_error(429, {}, {"retry-after-ms": "400", "retry-after": "1"}))
    assert failure is not None and failure.retry_after == pytest.approx(0.4)


def test_backoff_is_jittered_exponential_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=5, base_s=0.1, max_s=1.0)
    plain = Failure("retry", "connection", "reset")
    delays = [policy.delay(attempt, plain) for attempt in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(1.0, 0.1 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    told = Failure("retry", "rate_limit", "slow down", retry_after=0.7)
    assert all(0.7 <= policy.delay(1, told) <= 0.7 * 1.2 + 0.01 for _ in range(50))


# --- accounting -----------------------------------------------------------------------------


def test_prices_known_prefixed_and_unknown() -> None:
    table = PriceTable()
    price, priced_as = table.lookup("gpt-4o-2024-08-06")
    assert priced_as is None and price.input_per_1m == 2.5
    price, priced_as = table.lookup("simulated-model")
    assert priced_as == "gpt-4o-mini"
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    custom = PriceTable({"mine": ModelPrice(input_per_1m=1, output_per_1m=2)})
    assert custom.cost("mine", 500_000, 500_000) == pytest.approx(1.5)


def test_budget_reserves_and_settles() -> None:
    budget = Budget(max_tokens=1000, max_cost=1.0)
    budget.reserve(600, 0.1)
    with pytest.raises(BudgetExceeded):
        budget.reserve(500, 0.1)
    budget.settle(600, 0.1, Usage(prompt_tokens=300, completion_tokens=100, cost_usd=0.2))
    assert budget.used_tokens == 400 and budget.remaining_tokens == 600
    budget.reserve(500, 0.1)
    budget.settle(500, 0.1, None)
    with pytest.raises(BudgetExceeded):
        Budget(max_cost=0.001).reserve(10, 0.01)


def test_config_from_settings_and_missing_provider() -> None:
    settings = Settings(llm_rpm=500, llm_concurrency_max=64, llm_model="gpt-4o")
    config = GatewayConfig.from_settings(settings, base_url="http://127.0.0.1:1/v1")
    assert (config.rpm, config.concurrency_max, config.model) == (500, 64, "gpt-4o")
    with pytest.raises(ConfigError):
        LLMGateway(GatewayConfig.from_settings(settings))


def test_strict_schema_and_request_key() -> None:
    class Answer(BaseModel):
        title: str
        citations: list[int]

    fmt = json_schema_format(Answer)
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    messages = [{"role": "user", "content": "hi"}]
    assert request_key("m", messages) == request_key("m", [{"content": "hi", "role": "user"}])
    assert request_key("m", messages) != request_key("m", messages, params={"seed": 1})


# --- over real HTTP against the simulator ---------------------------------------------------


def _config(sim, **overrides) -> GatewayConfig:  # type: ignore[no-untyped-def]
    scale = sim.profile.time_scale
    values = {
        "base_url": sim.base_url,
        "api_key": "sim",
        "simulated": True,
        "backoff_base_s": max(0.005, 0.25 * scale),
        "timeout_s": 30.0,
    }
    values.update(overrides)
    return GatewayConfig(**values)


@pytest.mark.slow
async def test_2000_calls_under_a_connection_cap_and_rpm_all_succeed() -> None:
    async with run_simulator("tier1", time_scale=0.05) as sim:
        async with LLMGateway(_config(sim)) as gw:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(gw.complete(f"Item {i}. {TEXT}", max_tokens=40))
                    for i in range(2000)
                ]
            stats = gw.stats()
        sim_stats = sim.stats()
    assert all(t.result().text for t in tasks)
    assert stats.succeeded == 2000 and stats.failed == 0
    assert sim_stats["completed"] == 2000
    assert sim_stats["rejects"]["connection_refused"] > 0, "the cap was never reached"
    assert stats.limit_cuts >= 1
    assert stats.peak_in_flight_after_first_cut <= 100
    assert stats.learned_ceiling is not None and stats.learned_ceiling <= 100
    # RPM is paced from learned headers: 429s stay rare.
    assert sim_stats["rejects"]["rate_limit_rpm"] <= 40


async def test_429_with_retry_after_ms_is_waited_out() -> None:
    # 6 requests per (0.05 x 60 = 3 s) minute, bucket of one: one request per 0.5 s.
    async with run_simulator("tier1", time_scale=0.05, rpm=6, burst_s=10) as sim:
        config = _config(sim, learn_rate_limits=False, max_retries=8)
        async with LLMGateway(config) as gw:
            events: list[CallEvent] = []
            gw.subscribe(None, events.append)
            start = time.monotonic()
            async with asyncio.TaskGroup() as group:
                for i in range(3):
                    group.create_task(gw.complete(f"Call {i}. {TEXT}", max_tokens=5))
            elapsed = time.monotonic() - start
        sim_stats = sim.stats()
    retries = [e for e in events if isinstance(e, CallRetry)]
    assert sim_stats["completed"] == 3
    assert sim_stats["rejects"]["rate_limit_rpm"] == len(retries) >= 1
    assert all(r.reason == "rate_limit" for r in retries)
    # Each 429 said to wait ~500 ms (minus time already elapsed since the last refill).
    assert max(r.wait_s for r in retries) >= 0.3
    assert elapsed >= 0.95  # three requests need two refills


async def test_400_is_not_retried() -> None:
    async with run_simulator("unlimited") as sim:
        async with LLMGateway(_config(sim)) as gw:
            with pytest.raises(NonRetryableError) as info:
                # The body the server gets has no valid ``messages``: HTTP 400.
                await gw.complete(TEXT, extra={"extra_body": {"messages": "not a list"}})
            assert info.value.status == 400
            assert not isinstance(info.value, ContextOverflowError)
            assert gw.stats().http_requests == 1
        assert sim.stats()["requests"] == 1


async def test_expected_tokens_size_the_request_and_a_cut_answer_is_asked_again() -> None:
    async with run_simulator("unlimited") as sim, LLMGateway(_config(sim)) as gw:
        whole = await gw.complete(TEXT, max_tokens=2000)
        assert whole.finish_reason == "stop" and whole.usage.completion_tokens > 20
        before = sim.stats()
        # Enough: one attempt, and the provider is charged for what was asked, not the cap.
        enough = whole.usage.completion_tokens + 10
        sized = await gw.complete(TEXT, max_tokens=2000, expected_tokens=enough)
        charged = sim.stats()["charged_tokens"] - before["charged_tokens"]
        assert charged == sized.usage.prompt_tokens + enough
        # Decided when the call is admitted: a function, asked then.
        before = sim.stats()
        asked: list[int] = []
        late = await gw.complete(
            TEXT, max_tokens=2000, expected_tokens=lambda: asked.append(enough) or enough
        )
        charged_late = sim.stats()["charged_tokens"] - before["charged_tokens"]
        # Too little: the cut answer is asked again with the whole cap; same answer, same key.
        short = await gw.complete(TEXT, max_tokens=2000, expected_tokens=10)
        stats = gw.stats()
    assert sized.text == whole.text and sized.attempts == 1
    assert asked and charged_late == late.usage.prompt_tokens + enough
    assert late.text == whole.text and late.attempts == 1
    assert short.text == whole.text and short.finish_reason == "stop" and short.attempts == 2
    assert short.request_hash == sized.request_hash == whole.request_hash
    assert stats.retries_by_cause == {"output_length": 1}
    # The answer's own tokens, apart from the cut attempt's that usage also counts.
    assert short.answer_tokens == whole.usage.completion_tokens
    assert short.usage.completion_tokens == whole.usage.completion_tokens + 10


async def test_context_overflow_is_raised_at_once() -> None:
    async with run_simulator("unlimited", context_window=100) as sim:
        async with LLMGateway(_config(sim)) as gw:
            with pytest.raises(ContextOverflowError):
                await gw.complete(TEXT * 3, max_tokens=10)
            stats = gw.stats()
        assert sim.stats()["requests"] == 1
    assert stats.http_requests == 1
    assert stats.failures_by_cause == {"context_overflow": 1}


async def test_overflow_splits_and_every_item_is_answered() -> None:
    """Against the simulator's real context-window errors: ``call_splitting`` halves what
    the server rejects until every item is answered."""
    items = [
        f"Fact {i} [#{i}] about deposits and savings accounts in country {i}." for i in range(40)
    ]
    async with run_simulator("unlimited", context_window=250) as sim:
        async with LLMGateway(_config(sim)) as gw:
            calls = 0

            async def call(batch: list[str]) -> list[str]:
                nonlocal calls
                calls += 1
                prompt = "Summarise each fact.\n" + "\n".join(batch)
                res = await gw.complete(prompt, max_tokens=50)
                return [res.text] * len(batch)

            # One call with everything, far above what the server accepts.
            outcomes = await call_splitting(items, call)
        sim_stats = sim.stats()
    assert all(o.error is None and o.result for o in outcomes)
    assert [x for o in outcomes for x in o.items] == items
    splits = calls - len(outcomes)
    assert splits >= 3
    assert sim_stats["rejects"]["context_length"] == splits
    assert sim_stats["completed"] == len(outcomes)


async def test_cached_request_makes_no_http_call(database) -> None:  # type: ignore[no-untyped-def]
    class Answer(BaseModel):
        summary: str
        citations: list[int]

    prompt = f"{TEXT} See [#11] and [#12]."
    async with run_simulator("unlimited") as sim:
        cache = ResponseCache(database)
        tags = CallTags(run_id="run-cache", node="analyze")
        async with LLMGateway(_config(sim), cache=cache) as gw:
            first = await gw.complete(prompt, schema=Answer, tags=tags)
            before = sim.stats()
            second = await gw.complete(prompt, schema=Answer, tags=tags)
            assert sim.stats()["requests"] == before["requests"] == 1
            assert gw.usage("run-cache").calls == 1
            assert gw.usage("run-cache").cached_calls == 1
        # A new gateway (a restarted process) finds it too.
        async with LLMGateway(_config(sim), cache=cache) as again:
            third = await again.complete(prompt, schema=Answer, tags=tags)
        assert sim.stats()["requests"] == 1
    assert not first.cached and second.cached and third.cached
    assert second.parsed == first.parsed and second.text == first.text
    assert second.usage.cost_usd == 0 and second.usage.prompt_tokens == first.usage.prompt_tokens
    logged = await _logged_usage(database, "run-cache")
    assert (logged["calls"], logged["cached_calls"]) == (1, 2)
    assert logged["prompt_tokens"] == first.usage.prompt_tokens


async def test_usage_and_cost_equal_the_simulator_stats(database) -> None:  # type: ignore[no-untyped-def]
    async with run_simulator("unlimited") as sim:
        cache = ResponseCache(database)
        async with LLMGateway(_config(sim), cache=cache) as gw:
            async with asyncio.TaskGroup() as group:
                for i in range(30):
                    node = "market_fit" if i % 2 else "regulation"
                    group.create_task(
                        gw.complete(f"Call {i}. {TEXT}", tags=CallTags(run_id="r-usage", node=node))
                    )
            totals = gw.usage("r-usage")
            per_node = gw.usage_by_node("r-usage")
            stats = gw.stats()
        sim_stats = sim.stats()
    assert totals.calls == 30
    assert totals.prompt_tokens == sim_stats["prompt_tokens"]
    assert totals.completion_tokens == sim_stats["completion_tokens"]
    expected = PriceTable().cost(
        "gpt-4o-mini", sim_stats["prompt_tokens"], sim_stats["completion_tokens"]
    )
    assert totals.cost_usd == pytest.approx(expected)
    assert stats.cost_usd == pytest.approx(expected)
    assert set(per_node) == {"market_fit", "regulation"}
    assert sum(n.prompt_tokens for n in per_node.values()) == totals.prompt_tokens
    logged = await _logged_usage(database, "r-usage")
    assert logged["prompt_tokens"] == sim_stats["prompt_tokens"]
    assert logged["cost_usd"] == pytest.approx(expected)


async def _logged_usage(database, run_id: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """What the gateway wrote to the ``llm_usage`` log for one run."""
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE NOT cached), count(*) FILTER (WHERE cached), "
            "coalesce(sum(prompt_tokens) FILTER (WHERE NOT cached), 0), "
            "coalesce(sum(cost_usd) FILTER (WHERE NOT cached), 0) "
            "FROM llm_usage WHERE run_id = %s",
            (run_id,),
        )
        row = await cur.fetchone()
    return dict(zip(("calls", "cached_calls", "prompt_tokens", "cost_usd"), row, strict=True))


async def test_unknown_model_is_priced_like_gpt_4o_mini_and_says_so() -> None:
    async with (
        run_simulator("unlimited") as sim,
        LLMGateway(_config(sim, model="sim-model-x")) as gw,
    ):
        res = await gw.complete(TEXT, max_tokens=20)
    assert res.usage.priced_as == "gpt-4o-mini"
    assert res.usage.cost_usd == pytest.approx(
        PriceTable().cost("gpt-4o-mini", res.usage.prompt_tokens, res.usage.completion_tokens)
    )


async def test_structured_output_with_one_repair() -> None:
    seen: list[int] = []

    class Picky(BaseModel):
        title: str
        points: list[str]

        @field_validator("title")
        @classmethod
        def _reject_first(cls, value: str) -> str:
            seen.append(1)
            if len(seen) == 1:
                raise ValueError("first answer is never good enough")
            return value

    class Impossible(BaseModel):
        title: str

        @field_validator("title")
        @classmethod
        def _never(cls, value: str) -> str:
            raise ValueError("no title is acceptable")

    async with run_simulator("unlimited") as sim, LLMGateway(_config(sim)) as gw:
        res = await gw.complete(TEXT, schema=Picky)
        assert isinstance(res.parsed, Picky) and res.attempts == 2
        assert sim.stats()["requests"] == 2
        with pytest.raises(InvalidOutputError):
            await gw.complete(TEXT, schema=Impossible)
        assert sim.stats()["requests"] == 4


async def test_events_per_run_and_unsubscribe() -> None:
    async with run_simulator("unlimited") as sim, LLMGateway(_config(sim)) as gw:
        mine: list[CallEvent] = []
        unsubscribe = gw.subscribe("run-a", mine.append)
        await gw.complete(TEXT, tags=CallTags(run_id="run-a", node="n1"))
        await gw.complete(TEXT + " other", tags=CallTags(run_id="run-b", node="n1"))
        unsubscribe()
        await gw.complete(TEXT + " later", tags=CallTags(run_id="run-a", node="n1"))
    assert [type(e) for e in mine] == [CallStarted, CallFinished]
    finished = mine[1]
    assert isinstance(finished, CallFinished)
    assert finished.run_id == "run-a" and finished.node == "n1" and not finished.cached
    assert finished.usage.prompt_tokens > 0
    assert finished.answer_tokens == finished.usage.completion_tokens  # one attempt
    assert finished.model_dump()["type"] == "call_finished"


async def test_budget_is_checked_before_the_call() -> None:
    async with run_simulator("unlimited") as sim, LLMGateway(_config(sim)) as gw:
        budget = Budget(max_tokens=400)
        await gw.complete(TEXT, max_tokens=50, budget=budget)
        assert 0 < budget.used_tokens < 400
        with pytest.raises(BudgetExceeded):
            for _ in range(10):
                await gw.complete(TEXT, max_tokens=50, budget=budget)
        requests = sim.stats()["requests"]
        with pytest.raises(BudgetExceeded):
            await gw.complete(TEXT, max_tokens=50, budget=budget)
        assert sim.stats()["requests"] == requests
    assert budget.used_tokens <= 400


async def test_server_errors_and_resets_are_retried() -> None:
    async with (
        run_simulator("unlimited", fault_500=0.2, fault_503=0.1, fault_reset=0.1) as sim,
        LLMGateway(_config(sim, max_retries=10)) as gw,
    ):
        async with asyncio.TaskGroup() as group:
            for i in range(60):
                group.create_task(gw.complete(f"Call {i}. {TEXT}", max_tokens=20))
        stats = gw.stats()
    assert stats.succeeded == 60 and stats.failed == 0
    assert {"server_error_500", "connection"} <= set(stats.retries_by_cause)


async def test_timeouts_exhaust_retries() -> None:
    async with (
        run_simulator("unlimited", fault_stall=1.0, stall_s=5.0) as sim,
        LLMGateway(_config(sim, timeout_s=0.2, max_retries=1)) as gw,
    ):
        with pytest.raises(RetriesExhausted) as info:
            await gw.complete(TEXT)
        stats = gw.stats()
    assert info.value.cause == "timeout" and info.value.attempts == 2
    assert stats.retries_by_cause == {"timeout": 1}
    assert stats.limit_cuts == 2  # the retry started after the first cut: a new window


def test_stall_deadline_follows_the_answers_seen_per_node() -> None:
    watch = StallWatch(2.0, min_samples=20, floor_s=0.5)
    for i in range(19):
        watch.observe("lens", 1.0 + i / 100, 100)
    assert watch.deadline("lens", 100, 60.0) == 60.0  # too few answers yet
    assert watch.deadline("synthesize", 100, 60.0) == 60.0
    watch.observe("lens", 1.5, 100)
    assert watch.deadline("lens", 100, 60.0) == pytest.approx(3.0)  # 2 x the slowest of 20
    # Asking for twice the tokens of those answers: their times scaled up first.
    assert watch.deadline("lens", 200, 60.0) == pytest.approx(6.0)
    assert watch.deadline("lens", 50, 60.0) == pytest.approx(3.0)  # never scaled down
    assert watch.deadline("lens", 100, 2.0) == 2.0  # never beyond the configured deadline
    # A node with fewer answers of its own: every node's answers, scaled to its max_tokens.
    assert watch.deadline("synthesize", 300, 60.0) == pytest.approx(9.0)
    for _ in range(20):
        watch.observe("analyze", 0.01, 10)
    assert watch.deadline("analyze", 10, 60.0) == 0.5  # the floor
    off = StallWatch(None)
    for _ in range(30):
        off.observe("lens", 1.0, 100)
    assert off.deadline("lens", 100, 60.0) == 60.0


async def test_a_stalled_first_attempt_is_sent_again_after_the_learned_deadline() -> None:
    """Once answers of a node are known, a first attempt that hangs is given up after twice
    their time (at least 2 s) and sent again, instead of after the 60 s deadline."""
    async with (
        run_simulator("unlimited", ttft_s=0.02, stall_s=120.0) as sim,
        LLMGateway(_config(sim, timeout_s=60.0)) as gw,
    ):
        tags = CallTags(node="lens")
        for i in range(20):
            await gw.complete(f"Warm {i}. {TEXT}", max_tokens=20, tags=tags)
        calm = sim.profile
        sim.profile = calm.model_copy(update={"fault_stall": 1.0})
        call = asyncio.create_task(gw.complete(TEXT, max_tokens=20, tags=tags))
        give_up = time.monotonic() + 50
        while not gw.stats().retries_by_cause:  # the first attempt stalls and is given up
            assert time.monotonic() < give_up, "the stalled attempt was never given up"
            await asyncio.sleep(0.01)
        sim.profile = calm  # the retry (sent after its backoff) is answered
        result = await call
        stats = gw.stats()
    assert result.text
    assert stats.retries_by_cause == {"stalled": 1}
    assert sim.stats()["rejects"]["fault_stall"] == 1


async def test_a_first_attempt_sent_before_any_answer_is_given_up_once_answers_arrive() -> None:
    """The first wave of calls goes out before any answer time is known: a stalled one among
    them has its deadline brought forward once a few answers are in, and is sent again."""
    async with (
        run_simulator("unlimited", ttft_s=0.02, stall_s=120.0) as sim,
        LLMGateway(_config(sim, timeout_s=60.0)) as gw,
    ):
        tags = CallTags(node="lens")
        calm = sim.profile
        sim.profile = calm.model_copy(update={"fault_stall": 1.0})
        call = asyncio.create_task(gw.complete(TEXT, max_tokens=20, tags=tags))
        give_up = time.monotonic() + 50
        while not sim.stats()["rejects"]["fault_stall"]:  # its first attempt hangs
            assert time.monotonic() < give_up, "the first attempt never reached the simulator"
            await asyncio.sleep(0.01)
        sim.profile = calm
        for i in range(5):  # answers of the same wave come back
            await gw.complete(f"Warm {i}. {TEXT}", max_tokens=20, tags=tags)
        result = await call  # "stalled" below: given up before the 60 s deadline
        stats = gw.stats()
    assert result.text
    assert stats.retries_by_cause == {"stalled": 1}
    assert sim.stats()["rejects"]["fault_stall"] == 1


async def test_one_deadline_covers_admission_attempts_and_backoff() -> None:
    """Every attempt stalls; with generous per-attempt timeouts and retries, the call's one
    deadline is what ends it, as a ProviderError the run records for that item."""
    async with (
        run_simulator("unlimited", fault_stall=1.0, stall_s=30.0) as sim,
        LLMGateway(_config(sim, timeout_s=0.3, max_retries=50, deadline_s=1.0)) as gw,
    ):
        with pytest.raises(RetriesExhausted) as info:
            await gw.complete(TEXT)
        stats = gw.stats()
    assert info.value.cause == "deadline" and "deadline of 1 s" in str(info.value)
    assert stats.failures_by_cause == {"retries_exhausted_deadline": 1}
    assert stats.in_flight == 0  # the slot of the cancelled attempt was given back
    assert sum(stats.retries_by_cause.values()) < 50


async def test_azure_client_by_config() -> None:
    async with run_simulator("unlimited") as sim:
        config = GatewayConfig(
            azure_endpoint=sim.endpoint,
            azure_api_key="k",
            model="my-deployment",
            simulated=True,
        )
        async with LLMGateway(config) as gw:
            res = await gw.complete(TEXT, max_tokens=20)
        assert sim.stats()["requests"] == 1
    assert res.model == "my-deployment"
    with pytest.raises(ConfigError):
        LLMGateway(GatewayConfig(azure_endpoint="http://127.0.0.1:9"))
