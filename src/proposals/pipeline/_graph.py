"""The proposal graph (LangGraph): retrieve → analyze → plan → lenses (Send) → collect →
synthesize (Send per country x profile).

Fan-out sends *batches*, never single items; how many calls run at once is the gateway's
business, so the graph sets no ``max_concurrency``. With a checkpointer, thread id = run id
and a restarted process resumes where the last checkpoint left off.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from ._context import PipelineContext
from ._models import LENSES
from ._nodes import analyze, collect, finish, lens_node, plan, retrieve, synthesize

__all__ = ["PipelineState", "build_graph"]


class PipelineState(TypedDict, total=False):
    """Checkpointed state: plain JSON-like data only."""

    evidence: list[dict[str, Any]]
    """Chunks retrieved for node A: ``{id, text, citation}``."""
    themes: list[dict[str, Any]]
    lens_batches: list[dict[str, Any]]
    """Packed lens batches (chunk ids only)."""
    pairs: list[dict[str, Any]]
    """The (country, profile) pairs to synthesise, in request order."""
    findings: Annotated[list[dict[str, Any]], operator.add]
    proposals: Annotated[list[dict[str, Any]], operator.add]
    failed: Annotated[list[dict[str, Any]], operator.add]
    warnings: Annotated[list[str], operator.add]
    stops: Annotated[list[str], operator.add]
    """Why the run stopped early (budget); empty when it did not."""
    lens_done: Annotated[list[str], operator.add]
    synth_done: Annotated[list[str], operator.add]


def _after_analyze(state: PipelineState) -> str:
    return END if state.get("stops") or not state.get("themes") else "plan"


def _fan_out_lenses(state: PipelineState) -> list[Send] | str:
    batches = state.get("lens_batches") or []
    if not batches:
        return "collect"
    themes = state.get("themes") or []
    return [Send(b["lens"], {"batch": b, "themes": themes}) for b in batches]


def _fan_out_synthesis(state: PipelineState) -> list[Send] | str:
    if state.get("stops"):
        return END
    findings = state.get("findings") or []
    themes = state.get("themes") or []
    sends = []
    for pair in state.get("pairs") or []:
        country, name = pair["country"], pair["profile"]["name"]
        mine = [f for f in findings if f["country"] == country and f["profile"] == name]
        sends.append(Send("synthesize", {**pair, "themes": themes, "findings": mine}))
    return sends or END


def build_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The compiled proposal graph; pass a checkpointer to make runs resumable."""
    graph = StateGraph(PipelineState, context_schema=PipelineContext)
    graph.add_node("retrieve", retrieve)
    graph.add_node("analyze", analyze)
    graph.add_node("plan", plan)
    for lens in LENSES:
        graph.add_node(lens, lens_node(lens))
    graph.add_node("collect", collect)
    graph.add_node("synthesize", synthesize)
    graph.add_node("finish", finish)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "analyze")
    graph.add_conditional_edges("analyze", _after_analyze, ["plan", END])
    graph.add_conditional_edges("plan", _fan_out_lenses, [*LENSES, "collect"])
    for lens in LENSES:
        graph.add_edge(lens, "collect")
    graph.add_conditional_edges("collect", _fan_out_synthesis, ["synthesize", END])
    graph.add_edge("synthesize", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)
