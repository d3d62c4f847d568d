"""``proposals plan``: what a run will take, before it starts and without the LLM.

The plan is compared with a real run of the same request on the sample corpus, against the
simulator over loopback HTTP: calls exactly, input tokens within 1 %, and wall time within
25 % under a rate-limited simulator profile.
"""

from __future__ import annotations

from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.pipeline import NODES
from proposals.planning import make_plan, render_plan
from proposals.runs import open_services
from test_pipeline import _request, _run


async def test_plan_predicts_the_runs_calls_and_tokens(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    request = _request()
    async with open_services(corpus_settings, embedder=embedder) as svc:
        plan = await make_plan(request, corpus_settings, store=svc.store)
        print(render_plan(plan))
        result, _ = await _run(request, corpus_settings, svc)
    assert result.status == "completed", result.failed
    assert result.usage.cached_calls == 0
    assert plan.calls == result.calls
    assert abs(plan.prompt_tokens - result.usage.prompt_tokens) <= 0.01 * result.usage.prompt_tokens
    for node in NODES:
        used = result.usage_by_node.get(node)
        assert plan.by_node[node].calls == (used.calls if used else 0), node
    print(
        plan.prompt_tokens,
        result.usage.prompt_tokens,
        plan.completion_tokens,
        result.usage.completion_tokens,
    )


async def test_plan_wall_time_under_a_rate_limited_profile(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    settings = corpus_settings.model_copy(
        update={
            "simulator_profile": "openai-tier1-mini",
            "simulator_time_scale": 0.2,
            "llm_timeout_s": 120,
        }
    )
    request = _request()
    async with open_services(settings, embedder=embedder) as svc:
        plan = await make_plan(request, settings, store=svc.store)
        print(render_plan(plan))
        result, _ = await _run(request, settings, svc)
        print(svc.simulator.stats())
    print(plan.wall_s, result.elapsed_s, {k: v.wall_s for k, v in result.usage_by_node.items()})
    assert plan.calls == result.calls
    assert abs(plan.wall_s - result.elapsed_s) <= 0.25 * result.elapsed_s
