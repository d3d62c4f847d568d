"""Spans around the graph's nodes: one span per node under the run's, and for the nodes that
fan out (a lens's batches, synthesis per pair) one ``batch`` span per graph task under it.

The LLM call spans the gateway opens inside a task become that task's children. With no
OpenTelemetry SDK installed every span here is a no-op. When a plan replays the graph
(``PipelineContext.flow`` set), each task is also recorded in the call flow with its step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.config import get_config
from langgraph.runtime import Runtime

from ..observe import batch_span
from ._context import PipelineContext
from ._models import LENSES

__all__ = ["traced"]

_FANNED_OUT = frozenset({*LENSES, "synthesize"})
_UNTRACED = frozenset({"collect", "finish"})
"""Joins with no work of their own; they close the fanned-out nodes' spans."""

Node = Callable[..., Awaitable[dict[str, Any]]]


def traced(name: str, fn: Node) -> Node:
    """``fn`` (a node taking ``(state, runtime)``) inside its node's span."""

    async def node(state: Any, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
        ctx = runtime.context
        if ctx.flow is not None:
            step = int(get_config().get("metadata", {}).get("langgraph_step", 0))
            with ctx.flow.task(name, step):
                return await spanned(state, runtime)
        return await spanned(state, runtime)

    async def spanned(state: Any, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
        ctx = runtime.context
        rt = ctx.trace
        rt.run_id = ctx.run_id
        if name == "country":
            # Its parts (planning, lens batches, synthesis) open their own node spans.
            return await fn(state, runtime)
        if name in _UNTRACED:
            out = await fn(state, runtime)
            for ended in LENSES if name == "collect" else ("plan", *LENSES, "synthesize"):
                rt.end(ended)
            return out
        if name not in _FANNED_OUT:
            with rt.task(name, single=True):
                return await fn(state, runtime)
        if name == "synthesize":
            label, items, tokens = f"{state['country']}/{state['profile']['name']}", 1, 0
            country, profile = state["country"], state["profile"]["name"]
        else:
            batch = state["batch"]
            label, items, tokens = batch["id"], len(batch["items"]), batch["tokens"]
            first = batch["items"][0] if batch["items"] else {}
            country = first.get("country")
            profiles = {it["profile"]["name"] for it in batch["items"]}
            profile = profiles.pop() if len(profiles) == 1 else None
        with (
            rt.task(name, single=False),
            batch_span(
                ctx.run_id,
                name,
                label,
                items=items,
                tokens=tokens,
                country=country,
                profile=profile,
            ),
        ):
            return await fn(state, runtime)

    node.__name__ = getattr(fn, "__name__", name)
    return node
