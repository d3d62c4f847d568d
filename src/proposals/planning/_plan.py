"""``make_plan``: what a run would take, worked out without calling the LLM."""

from __future__ import annotations

import time
from typing import Any

from ..config import Settings
from ..errors import InputError
from ..llm import GatewayConfig
from ..pipeline import LENSES, NODES, ProposalRequest
from ..simulator import SimulatorProfile, get_profile
from ..store import Store
from ._model import NodePlan, Plan, PlanLimits
from ._replay import Replay, replay
from ._schedule import schedule

__all__ = ["make_plan", "provider_profile"]

# Latency of a small hosted model (gpt-4o-mini), as the simulator's quota-shaped profiles
# use it (sources in simulator/_profiles.py): assumed for a configured provider.
_HOSTED = get_profile("openai-tier1-mini")


def provider_profile(
    settings: Settings, sim_profile: str | None = None, time_scale: float | None = None
) -> tuple[SimulatorProfile, str, bool]:
    """The limits and latency a run would meet: (profile, provider name, simulated).

    ``sim_profile`` names a simulator profile to plan for; without it, the configured
    provider's (the settings' RPM/TPM with a small hosted model's latency), or, when none is
    configured, the simulator the run would start (profile and time scale of the settings).
    """
    if sim_profile is not None or not settings.provider_configured:
        name = sim_profile or settings.simulator_profile
        scale = time_scale or settings.simulator_time_scale
        profile = get_profile(name, time_scale=scale)
        return profile, f"simulator {profile.name} (time scale {scale:g})", True
    if time_scale is not None:
        raise InputError("--time-scale applies to the simulator only; add --sim-profile NAME")
    config = GatewayConfig.from_settings(settings)
    profile = _HOSTED.model_copy(
        update={"name": "configured provider", "rpm": config.rpm, "tpm": config.tpm}
    )
    where = settings.azure_openai_endpoint or settings.openai_base_url or "api.openai.com"
    return profile, f"configured provider {where}", False


async def make_plan(
    request: ProposalRequest,
    settings: Settings,
    *,
    store: Store,
    sim_profile: str | None = None,
    time_scale: float | None = None,
    seed: int = 0,
) -> Plan:
    """Retrieve and pack ``request`` as a run would, replay its calls with the simulator's
    answers standing in for the model's, and schedule them under the provider's limits.

    Raises :class:`InputError` for an unknown simulator profile.
    """
    began = time.perf_counter()
    profile, provider, simulated = provider_profile(settings, sim_profile, time_scale)
    window = request.options.context_window or settings.context_window
    # The stand-in answers as that profile's simulator would; for another provider its
    # window is the configured one (what packing assumes).
    stand_in = profile if simulated else get_profile(settings.simulator_profile)
    if not simulated:
        stand_in = stand_in.model_copy(update={"context_window": window, "context_windows": {}})
    done = await replay(request, settings, store=store, profile=stand_in, seed=seed)
    sched = schedule(
        done.calls,
        done.flow,
        profile,
        concurrency_start=settings.llm_concurrency_start,
        concurrency_max=settings.llm_concurrency_max,
    )
    by_node: dict[str, NodePlan] = {}
    exact_calls = set(c.call_id for c in done.calls if c.node == "analyze")
    exact_calls = set(sorted(exact_calls)[: done.analyze_groups])
    for node in NODES:
        mine = [c for c in done.calls if c.node == node]
        by_node[node] = NodePlan(
            calls=len(mine),
            prompt_tokens=sum(c.prompt_tokens for c in mine),
            completion_tokens=sum(c.completion_tokens for c in mine),
            cost_usd=round(sum(done.costs.get(c.call_id, 0.0) for c in mine), 6),
            wall_s=round(sched.node_wall_s(node), 2),
            input_exact=bool(mine) and all(c.call_id in exact_calls for c in mine),
        )
    prompt = sum(c.prompt_tokens for c in done.calls)
    completion = sum(c.completion_tokens for c in done.calls)
    cost = round(sum(done.costs.values()), 6)
    state = done.state
    themes = len(state.get("themes") or [])
    batches = state.get("lens_batches") or []
    plan = Plan(
        request=request,
        provider=provider,
        calls=len(done.calls),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost_usd=cost,
        wall_s=round(sched.wall_s, 2),
        by_node=by_node,
        themes=themes,
        lens_items=sum(len(b["items"]) for b in batches),
        lens_batches=len(batches),
        findings=len(state.get("findings") or []),
        limits=PlanLimits(
            name=provider,
            rpm=profile.rpm,
            tpm=profile.tpm,
            max_connections=profile.max_connections,
            concurrency_max=settings.llm_concurrency_max,
            ttft_s=profile.ttft_s,
            per_token_s=profile.per_token_s,
            time_scale=profile.time_scale,
        ),
        estimates=_estimates(request, done, stand_in, simulated=simulated),
        warnings=list(dict.fromkeys(state.get("warnings") or [])),
    )
    _check_budget(plan, done)
    plan.planned_in_s = round(time.perf_counter() - began, 2)
    return plan


def _estimates(
    request: ProposalRequest, done: Replay, stand_in: SimulatorProfile, *, simulated: bool
) -> list[str]:
    n = request.options.themes
    state = done.state
    themes = len(state.get("themes") or [])
    pairs = len(request.pairs())
    analyze = sum(1 for c in done.calls if c.node == "analyze")
    answers = f"the offline simulator's answers (profile {stand_in.name}, seed 0)"
    notes = [
        f"analyze: its {done.analyze_groups} call(s) over the retrieved evidence and their input "
        f"tokens are exact; the {analyze - done.analyze_groups} merge call(s) after them depend "
        f"on the themes answered, here {answers}.",
        f"lenses: {themes} theme(s) (asked for {n}) x {pairs} country-profile pair(s) x "
        f"{len(LENSES)} lenses; each item's evidence is drawn with its theme's text, so the "
        "batches and their input tokens depend on the themes answered.",
        f"synthesize: {len(state.get('findings') or [])} finding(s) from the lenses (the "
        f"simulator states about {stand_in.list_mean:g} per item) decide the synthesis calls "
        "and their input.",
        "output tokens: the stand-in answers' lengths, cut at each call's max_tokens.",
        "wall time: the calls scheduled under the limits shown (request and token buckets, "
        "the gateway's concurrency, latency = time to first token + per output token); "
        "retrieval and evidence drawing as long as they took for this plan.",
    ]
    if simulated:
        notes.insert(
            0,
            "the run's provider is this simulator (same profile, seed 0): every figure is what "
            "the run will do, except calls answered from the response cache (free, instant).",
        )
    return notes


def _check_budget(plan: Plan, done: Replay) -> None:
    """Warn (first) when the run would exceed its token or cost budget, and where."""
    opts = plan.request.options
    warnings: list[str] = []

    def where(limit: float, key: Any) -> str:
        total = 0.0
        for call in done.calls:
            total += key(call)
            if total > limit:
                return f"; it would stop with partial results during {call.node}"
        return ""

    if opts.max_tokens is not None and plan.total_tokens > opts.max_tokens:
        at = where(opts.max_tokens, lambda c: c.prompt_tokens + c.completion_tokens)
        warnings.append(
            f"token budget: the run needs about {plan.total_tokens:,} tokens, over its "
            f"budget of {opts.max_tokens:,} (--max-tokens){at}"
        )
    if opts.max_cost_usd is not None and plan.cost_usd > opts.max_cost_usd:
        at = where(opts.max_cost_usd, lambda c: done.costs.get(c.call_id, 0.0))
        warnings.append(
            f"cost budget: the run costs about ${plan.cost_usd:.4f}, over its budget of "
            f"${opts.max_cost_usd:.4f} (--max-cost){at}"
        )
    plan.over_budget = bool(warnings)
    plan.warnings = warnings + plan.warnings
