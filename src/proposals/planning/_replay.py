"""Replay a run without the LLM: the proposal graph, the real LLM gateway, and the simulator's
answers in process.

The graph retrieves and packs exactly as a run does (it is the run's own graph, nodes and
packers); only the gateway's transport differs: :class:`~proposals.simulator.InProcessProvider`
answers each request as the simulator of that profile and seed would, with no network, no
limits and no latency. Nothing is stored: no run, no events, no checkpoints, no cache.
"""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from ..config import Settings
from ..llm import CallEvent, CallFailed, CallFinished, CallStarted, GatewayConfig, LLMGateway
from ..pipeline import (
    CallFlow,
    NullReporter,
    PipelineContext,
    Prompts,
    ProposalRequest,
    build_graph,
)
from ..simulator import InProcessProvider, SimulatorProfile
from ..store import Store
from ._schedule import PlannedCall

__all__ = ["Replay", "replay"]

_RECURSION_LIMIT = 64
_IN_PROCESS_URL = "http://simulator.in-process/v1"


@dataclass
class Replay:
    """What the replayed run did."""

    calls: list[PlannedCall]
    costs: dict[int, float]
    flow: CallFlow
    state: dict[str, Any]
    analyze_groups: int
    """Packed evidence groups analyze mapped over (its exact calls)."""
    elapsed_s: float


_calling: ContextVar[int | None] = ContextVar("proposals_plan_call", default=None)
"""The gateway call the current task is making (set at its start, read by the transport)."""


class _Recorder:
    """Gateway listener and transport hook: every call's node, tokens and the ``max_tokens``
    its first request asked for (providers charge rate budgets on it); and the flow."""

    def __init__(self, flow: CallFlow) -> None:
        self.flow = flow
        self.asked: dict[int, int | None] = {}
        self.calls: list[PlannedCall] = []
        self.costs: dict[int, float] = {}

    def __call__(self, event: CallEvent) -> None:
        self.flow.on_call(event)
        if isinstance(event, CallStarted):
            _calling.set(event.call_id)
        elif isinstance(event, CallFinished | CallFailed):
            usage = event.usage if isinstance(event, CallFinished) else None
            self.calls.append(
                PlannedCall(
                    call_id=event.call_id,
                    node=event.node or "?",
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                    max_tokens=self.asked.get(event.call_id),
                )
            )
            self.costs[event.call_id] = usage.cost_usd if usage else 0.0

    def on_request(self, body: dict[str, Any]) -> None:
        call_id = _calling.get()
        if call_id is not None and call_id not in self.asked:
            cap = body.get("max_completion_tokens") or body.get("max_tokens")
            self.asked[call_id] = int(cap) if isinstance(cap, int | float) else None


class _GroupCounter(NullReporter):
    """A reporter that keeps what the replay needs from progress: analyze's group count."""

    def __init__(self) -> None:
        self.analyze_total = 0

    def node_started(self, node: str, total: int) -> None:
        if node == "analyze":
            self.analyze_total = total


async def replay(
    request: ProposalRequest,
    settings: Settings,
    *,
    store: Store,
    profile: SimulatorProfile,
    seed: int = 0,
) -> Replay:
    """Run ``request``'s graph on ``store`` with the simulator's answers standing in."""
    began = time.perf_counter()
    opts = request.options
    window = opts.context_window or settings.context_window
    config = GatewayConfig.from_settings(
        settings,
        base_url=_IN_PROCESS_URL,
        api_key="in-process",
        azure_endpoint=None,
        simulated=True,
        rpm=None,
        tpm=None,
        learn_rate_limits=False,
        trace_content=False,
    )
    plan_id = f"plan-{uuid.uuid4().hex[:12]}"
    flow = CallFlow()
    recorder = _Recorder(flow)
    counter = _GroupCounter()
    async with LLMGateway(
        config,
        cache=None,
        transport=InProcessProvider(profile, seed, on_request=recorder.on_request),
    ) as gateway:
        unsubscribe = gateway.subscribe(plan_id, recorder)
        try:
            context = PipelineContext(
                run_id=plan_id,
                request=request,
                gateway=gateway,
                store=store,
                prompts=Prompts(settings.prompts_dir),
                default_model=config.model,
                context_window=window,
                output_reserve=opts.output_reserve or settings.output_reserve,
                reporter=counter,
                tenant=store.tenant,
                flow=flow,
            )
            graph = build_graph(None)
            run_config = RunnableConfig(recursion_limit=_RECURSION_LIMIT)
            with flow.following():
                state = await graph.ainvoke({}, run_config, context=context)
        finally:
            unsubscribe()
    recorder.calls.sort(key=lambda c: c.call_id)
    return Replay(
        calls=recorder.calls,
        costs=recorder.costs,
        flow=flow,
        state=dict(state),
        analyze_groups=max(0, counter.analyze_total - (counter.analyze_total > 1)),
        elapsed_s=time.perf_counter() - began,
    )
