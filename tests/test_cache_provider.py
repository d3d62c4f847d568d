"""A cached answer is only reused for the endpoint that gave it (issue 8, item 1)."""

from __future__ import annotations

from proposals.db import Database
from proposals.llm import CallTags, GatewayConfig, LLMGateway, ResponseCache
from proposals.simulator import run_simulator

PROMPT = "Savings products for households. One sentence describes the market. See [#3]."


def _config(base_url: str, *, simulated: bool) -> GatewayConfig:
    return GatewayConfig(base_url=base_url, api_key="k", simulated=simulated, timeout_s=30.0)


async def test_simulated_answer_is_never_served_to_a_real_provider(database: Database) -> None:
    cache = ResponseCache(database)
    tags = CallTags(run_id="r", node="analyze")
    async with run_simulator("unlimited") as demo, run_simulator("unlimited", seed=7) as real:
        # The demo's answer, stored in the cache.
        async with LLMGateway(_config(demo.base_url, simulated=True), cache=cache) as gw:
            first = await gw.complete(PROMPT, tags=tags)
        # Another simulator process (another port) is the same endpoint: resume stays free.
        async with run_simulator("unlimited") as again:
            async with LLMGateway(_config(again.base_url, simulated=True), cache=cache) as gw:
                assert (await gw.complete(PROMPT, tags=tags)).cached
            assert again.stats()["requests"] == 0
        # A configured provider at another URL asks that provider.
        async with LLMGateway(_config(real.base_url, simulated=False), cache=cache) as gw:
            answer = await gw.complete(PROMPT, tags=tags)
            assert not answer.cached
            assert real.stats()["requests"] == 1
            # ... and its own answer is cached for itself.
            assert (await gw.complete(PROMPT, tags=tags)).cached
    assert not first.cached


async def test_two_real_endpoints_do_not_share_answers(database: Database) -> None:
    cache = ResponseCache(database)
    async with run_simulator("unlimited") as a, run_simulator("unlimited") as b:
        async with LLMGateway(_config(a.base_url, simulated=False), cache=cache) as gw:
            await gw.complete(PROMPT)
        async with LLMGateway(_config(b.base_url, simulated=False), cache=cache) as gw:
            assert not (await gw.complete(PROMPT)).cached
        assert (a.stats()["requests"], b.stats()["requests"]) == (1, 1)


async def test_no_cache_asks_the_provider_and_still_stores(database: Database) -> None:
    cache = ResponseCache(database)
    async with run_simulator("unlimited") as sim:
        config = _config(sim.base_url, simulated=True)
        async with LLMGateway(config, cache=cache) as gw:
            await gw.complete(PROMPT)
        async with LLMGateway(config, cache=cache, read_cache=False) as gw:
            assert not (await gw.complete(PROMPT + " Again.")).cached
            assert not (await gw.complete(PROMPT)).cached
        assert sim.stats()["requests"] == 3
        async with LLMGateway(config, cache=cache) as gw:
            assert (await gw.complete(PROMPT + " Again.")).cached


def test_endpoint_identity() -> None:
    assert GatewayConfig(simulated=True, base_url="http://127.0.0.1:1/v1").endpoint == "simulator"
    assert GatewayConfig(api_key="k").endpoint == "https://api.openai.com/v1"
    assert GatewayConfig(base_url="http://localhost:8080/v1/").endpoint == (
        "http://localhost:8080/v1"
    )
    azure = GatewayConfig(azure_endpoint="https://x.openai.azure.com", azure_api_key="k")
    assert azure.endpoint == "azure:https://x.openai.azure.com"
