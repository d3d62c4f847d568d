"""The proposal graph (LangGraph): retrieve → analyze → ``country`` (Send per country:
evidence planning, lens batches and each pair's synthesis, pipelined) → finish.

The stage-by-stage path, plan → lenses (Send per batch) → collect → synthesize (Send per
pair), waits at every stage for the slowest task; it stays in the graph so that runs
checkpointed by an earlier version resume, and ``build_graph(pipelined=False)`` takes it (the
two give the same results). Fan-out sends *batches*, never single items; how many calls run
at once is the gateway's business, so the graph sets no ``max_concurrency``. With a
checkpointer, thread id = run id and a restarted process resumes where the last checkpoint
left off.
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from ._analyze import analyze
from ._context import PipelineContext
from ._countries import CountryInput, country
from ._lenses import collect, lens_node
from ._models import LENSES
from ._retrieve import plan, retrieve
from ._state import LensInput, PipelineState, SynthesisInput
from ._synthesize import finish, synthesize
from ._traced import traced

__all__ = ["PipelineState", "build_graph"]


def _after_analyze(state: PipelineState) -> str:
    return END if state.get("stops") or not state.get("themes") else "plan"


def _fan_out_countries(state: PipelineState, runtime: Runtime[PipelineContext]) -> list[Send] | str:
    if state.get("stops") or not state.get("themes"):
        return END
    themes = state.get("themes") or []
    countries = runtime.context.request.countries
    return [
        Send("country", CountryInput(country=c, index=i, themes=themes))
        for i, c in enumerate(countries)
    ]


def _fan_out_lenses(state: PipelineState) -> list[Send] | str:
    batches = state.get("lens_batches") or []
    if not batches:
        return "collect"
    themes = state.get("themes") or []
    return [Send(b["lens"], LensInput(batch=b, themes=themes)) for b in batches]


def _fan_out_synthesis(state: PipelineState) -> list[Send] | str:
    if state.get("stops"):
        return END
    findings = state.get("findings") or []
    themes = state.get("themes") or []
    sends = []
    for pair in state.get("pairs") or []:
        country, name = pair["country"], pair["profile"]["name"]
        mine = [f for f in findings if f["country"] == country and f["profile"] == name]
        payload = SynthesisInput(
            country=country, profile=pair["profile"], themes=themes, findings=mine
        )
        sends.append(Send("synthesize", payload))
    return sends or END


Graph = CompiledStateGraph[PipelineState, PipelineContext, PipelineState, PipelineState]
"""The compiled proposal graph's type: state in and out, :class:`PipelineContext` at run time."""


def build_graph(
    checkpointer: BaseCheckpointSaver | None = None, *, pipelined: bool = True
) -> Graph:
    """The compiled proposal graph; pass a checkpointer to make runs resumable.

    ``pipelined=False`` runs new runs stage by stage (see the module docstring)."""
    graph = StateGraph(PipelineState, context_schema=PipelineContext)
    graph.add_node("retrieve", traced("retrieve", retrieve))
    graph.add_node("analyze", traced("analyze", analyze))
    graph.add_node("plan", traced("plan", plan))
    for lens in LENSES:
        graph.add_node(lens, traced(lens, lens_node(lens)))
    graph.add_node("collect", traced("collect", collect))
    graph.add_node("synthesize", traced("synthesize", synthesize))
    graph.add_node("finish", traced("finish", finish))
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "analyze")
    graph.add_node("country", traced("country", country))
    if pipelined:
        graph.add_conditional_edges("analyze", _fan_out_countries, ["country", END])
    else:
        graph.add_conditional_edges("analyze", _after_analyze, ["plan", END])
    graph.add_edge("country", "finish")
    graph.add_conditional_edges("plan", _fan_out_lenses, [*LENSES, "collect"])
    for lens in LENSES:
        graph.add_edge(lens, "collect")
    graph.add_conditional_edges("collect", _fan_out_synthesis, ["synthesize", END])
    graph.add_edge("synthesize", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)
