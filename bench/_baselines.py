"""Strategies 1-3 of ``bench.versus``: the proposal workload built the way the reference
system built it, on LangGraph with ``langchain-openai`` (the ``bench`` extra), not inside our
gateway.

One graph for the three: retrieve -> analyze (node A, one call) -> plan (each lens item's
evidence) -> one lens node per ``Send`` -> synthesize per (country, profile) once every lens
call is back. They differ only in how LLM calls are issued:

- ``fanout``: one ``Send`` per item (720 at full scale), no limit: what the reference did
  first, over 400 calls in flight;
- ``grouped50``: items grouped ``GROUP`` to a call and at most 50 calls at once (a semaphore
  around every call): what it settled on;
- ``max_concurrency``: one ``Send`` per item, LangGraph's ``max_concurrency`` in the run
  config (``MAX_CONCURRENCY``) instead of a gateway.

Every call goes through one ``ChatOpenAI`` (SDK defaults: 2 retries with backoff honouring
``retry-after``; no ``max_tokens``, so the provider charges the tokens produced, which is
kinder to them than our reserved output). Prompts are the project's own templates and
evidence comes from the project's store, so the calls carry the same material as ours.
To be charitable, a node catches its call's error and records its items as failed instead of
failing the whole graph (what LangGraph would otherwise do).
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel, Field, create_model

from proposals.embeddings import CachingEmbedder
from proposals.pipeline import LENSES, Prompts, ProposalRequest
from proposals.store import Store
from proposals.tokens import count_tokens, truncate_to_tokens

Strategy = Literal["fanout", "grouped50", "max_concurrency"]
STRATEGIES: tuple[Strategy, ...] = ("fanout", "grouped50", "max_concurrency")
GROUP = 3
"""Items per call in ``grouped50`` (about what our packing puts in one lens call)."""
FIXED_LIMIT = 50
MAX_CONCURRENCY = 100
"""``max_concurrency`` of the third strategy: a round number a user would pick, twice the
reference's 50; it bounds one invocation's tasks and knows nothing of RPM or TPM."""
WINDOW = 32_768
RESERVE = 4_096
"""Tokens kept free for the answer when truncating material to the window."""

_DOC_TYPES: dict[str, list[str] | None] = {
    "market_fit": None,
    "regulation": ["official"],
    "feasibility": ["technical_report"],
    "positioning": ["product_description"],
}
_FOCUS = {
    "market_fit": "demand, needs, behaviour and market size",
    "regulation": "regulation, licences, consumer protection and limits",
    "feasibility": "infrastructure, payment rails and operations",
    "positioning": "existing products, fees, prices and competitors",
}


class _Finding(BaseModel):
    statement: str
    citations: list[int]


class _Theme(BaseModel):
    title: str
    description: str
    citations: list[int]


class _Proposal(BaseModel):
    title: str
    summary: str
    value_proposition: str
    key_features: list[str]
    regulatory_notes: str
    feasibility: str
    pricing_and_positioning: str
    risks: list[str]
    score: float
    score_reason: str
    citations: list[int]


def _themes_model(n: int) -> type[BaseModel]:
    return create_model("Themes", themes=(list[_Theme], Field(min_length=n, max_length=n)))


def _findings_model(items: int) -> type[BaseModel]:
    fields: dict[str, Any] = {
        f"item_{i}": (list[_Finding], Field(max_length=12)) for i in range(1, items + 1)
    }
    return create_model(f"Findings{items}", **fields)


def _proposals_model(n: int) -> type[BaseModel]:
    return create_model("Proposals", proposals=(list[_Proposal], Field(max_length=n)))


class _State(TypedDict, total=False):
    evidence: list[str]
    themes: list[dict[str, Any]]
    items: list[dict[str, Any]]
    findings: Annotated[list[dict[str, Any]], operator.add]
    proposals: Annotated[list[dict[str, Any]], operator.add]
    failed: Annotated[list[str], operator.add]


@dataclass
class Counters:
    """What a baseline run issued: logical calls (each retried by the SDK) and failed ones."""

    calls: int = 0
    failed_calls: int = 0
    failed_items: list[str] = field(default_factory=list)
    max_output: dict[str, int] = field(default_factory=dict)
    """Largest completion (tokens) per stage: analyze, lens, synthesize (for the bound)."""
    timeline: list[tuple[str, float, float, int]] = field(default_factory=list)
    """Per answered call: stage, start and end (monotonic seconds), tokens (prompt +
    completion)."""


class Baseline:
    """One baseline strategy over ``store`` and the endpoint at ``base_url``."""

    def __init__(
        self,
        strategy: Strategy,
        request: ProposalRequest,
        store: Store,
        base_url: str,
        *,
        timeout_s: float,
    ) -> None:
        self.strategy = strategy
        self.request = request
        assert store.embedder is not None
        self.store = Store(store.database, CachingEmbedder(store.embedder))
        self.prompts = Prompts()
        self.llm = ChatOpenAI(
            model="gpt-4o-mini", base_url=base_url, api_key="sim", timeout=timeout_s
        )
        self.counters = Counters()
        self._gate: asyncio.Semaphore | None = (
            asyncio.Semaphore(FIXED_LIMIT) if strategy == "grouped50" else None
        )
        self._structured: dict[type[BaseModel], Any] = {}
        variables = request.variables
        self._common = {
            "brief": request.brief,
            "countries": ", ".join(request.countries),
            "profiles": "; ".join(sorted({p.name for _, p in request.pairs()})),
            "variables": "\n".join(f"- {k}: {variables[k]}" for k in sorted(variables)) or "(none)",
        }

    async def _ask(
        self, stage: str, messages: list[dict[str, str]], schema: type[BaseModel]
    ) -> Any:
        runnable = self._structured.get(schema)
        if runnable is None:
            runnable = self._structured[schema] = self.llm.with_structured_output(
                schema, method="json_schema", include_raw=True
            )
        self.counters.calls += 1
        gate = self._gate if self._gate is not None else contextlib.nullcontext()
        started = time.monotonic()
        async with gate:
            out = await runnable.ainvoke(messages)
        if out.get("parsing_error") is not None or out.get("parsed") is None:
            raise ValueError(f"unparsable answer: {out.get('parsing_error')}")
        usage = getattr(out["raw"], "usage_metadata", None) or {}
        tokens = int(usage.get("output_tokens", 0))
        self.counters.max_output[stage] = max(self.counters.max_output.get(stage, 0), tokens)
        total = int(usage.get("total_tokens", 0))
        self.counters.timeline.append((stage, started, time.monotonic(), total))
        return out["parsed"]

    # -- nodes --------------------------------------------------------------------------------
    async def retrieve(self, state: _State) -> dict[str, Any]:
        req = self.request
        hits = await asyncio.gather(
            *(
                self.store.search(
                    f"{req.brief}. {_FOCUS[lens]}",
                    k=req.options.retrieval_k,
                    country=country,
                    doc_types=_DOC_TYPES[lens],
                )
                for country in req.countries
                for lens in LENSES
            )
        )
        pool = {h.chunk_id: h.text for batch in hits for h in batch}
        return {"evidence": [f"[#{cid}] {pool[cid]}" for cid in sorted(pool)]}

    async def analyze(self, state: _State) -> dict[str, Any]:
        n = self.request.options.themes
        empty = self.prompts.render("analyze_map", evidence="", n=n, **self._common)
        budget = WINDOW - RESERVE - sum(count_tokens(m["content"]) + 8 for m in empty)
        evidence = truncate_to_tokens("\n".join(state["evidence"]), budget)
        messages = self.prompts.render("analyze_map", evidence=evidence, n=n, **self._common)
        try:
            out = await self._ask("analyze", messages, _themes_model(n))
        except Exception as exc:
            self.counters.failed_calls += 1
            return {"themes": [], "failed": [f"analyze: {type(exc).__name__}"]}
        themes = [{"id": f"T{i}", **t.model_dump()} for i, t in enumerate(out.themes, 1)]
        return {"themes": themes}

    async def plan(self, state: _State) -> dict[str, Any]:
        req = self.request
        jobs = [
            (lens, country, profile, theme)
            for lens in LENSES
            for country in req.countries
            for profile in req.profiles_for(country)
            for theme in state.get("themes") or []
        ]
        gate = asyncio.Semaphore(6)

        async def search(lens: str, country: str, profile: Any, theme: dict[str, Any]) -> str:
            query = f"{theme['title']}. {theme['description']} {profile.name}. {_FOCUS[lens]}"
            async with gate:
                hits = await self.store.search(
                    query, k=req.options.evidence_k, country=country, doc_types=_DOC_TYPES[lens]
                )
            return "\n".join(f"[#{h.chunk_id}] {h.text}" for h in hits)

        texts = await asyncio.gather(*(search(*job) for job in jobs))
        items = [
            {
                "key": f"{lens} {theme['id']} {country}/{profile.name}",
                "lens": lens,
                "country": country,
                "profile": profile.name,
                "theme_id": theme["id"],
                "text": (
                    f"Theme {theme['id']}: {theme['title']}\n{theme['description']}\n"
                    f"Country: {country}\nProfile: {profile.name} ({profile.description})\n"
                    f"Evidence:\n{text}"
                ),
            }
            for (lens, country, profile, theme), text in zip(jobs, texts, strict=True)
        ]
        return {"items": items}

    def fan_out_lenses(self, state: _State) -> list[Send] | str:
        items = state.get("items") or []
        if not items:
            return END
        if self.strategy != "grouped50":
            return [Send("lens", {"items": [it]}) for it in items]
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for it in items:
            groups.setdefault((it["lens"], it["country"], it["profile"]), []).append(it)
        return [
            Send("lens", {"items": group[i : i + GROUP]})
            for group in groups.values()
            for i in range(0, len(group), GROUP)
        ]

    async def lens(self, payload: dict[str, Any]) -> dict[str, Any]:
        items: list[dict[str, Any]] = payload["items"]
        lens = items[0]["lens"]
        material = "\n\n".join(f"[item_{k}] {it['text']}" for k, it in enumerate(items, 1))
        messages = self.prompts.render(
            lens, items=material, brief=self.request.brief, variables=self._common["variables"]
        )
        try:
            out = await self._ask("lens", messages, _findings_model(len(items)))
        except Exception:
            self.counters.failed_calls += 1
            return {"failed": [it["key"] for it in items]}
        findings = [
            {**{k: it[k] for k in ("lens", "country", "profile", "theme_id")}, **f.model_dump()}
            for k, it in enumerate(items, 1)
            for f in getattr(out, f"item_{k}")
        ]
        return {"findings": findings}

    def fan_out_synthesis(self, state: _State) -> list[Send] | str:
        findings = state.get("findings") or []
        sends = []
        for country, profile in self.request.pairs():
            mine = [f for f in findings if f["country"] == country and f["profile"] == profile.name]
            sends.append(
                Send(
                    "synthesize",
                    {
                        "country": country,
                        "profile": f"{profile.name} ({profile.description})",
                        "themes": state.get("themes") or [],
                        "findings": mine,
                    },
                )
            )
        return sends or END

    async def synthesize(self, payload: dict[str, Any]) -> dict[str, Any]:
        n = self.request.options.proposals_per_pair
        values = {**self._common, "country": payload["country"], "profile": payload["profile"]}
        themes = "\n".join(f"{t['id']}: {t['title']}" for t in payload["themes"])
        empty = self.prompts.render("synthesize", themes=themes, material="", n=n, **values)
        budget = WINDOW - RESERVE - sum(count_tokens(m["content"]) + 8 for m in empty)
        lines = [
            f"- ({f['theme_id']}, {f['lens']}) {f['statement']} "
            + " ".join(f"[#{c}]" for c in f["citations"])
            for f in payload["findings"]
        ]
        material = truncate_to_tokens("\n".join(lines), budget)
        messages = self.prompts.render(
            "synthesize", themes=themes, material=material, n=n, **values
        )
        key = f"synthesize {payload['country']}/{payload['profile']}"
        try:
            out = await self._ask("synthesize", messages, _proposals_model(n))
        except Exception:
            self.counters.failed_calls += 1
            return {"failed": [key]}
        return {"proposals": [p.model_dump() for p in out.proposals]}

    # -- graph --------------------------------------------------------------------------------
    def graph(self) -> Any:
        graph = StateGraph(_State)
        graph.add_node("retrieve", self.retrieve)
        graph.add_node("analyze", self.analyze)
        graph.add_node("plan", self.plan)
        graph.add_node("lens", self.lens)  # type: ignore[arg-type]
        graph.add_node("gather", lambda state: {})
        graph.add_node("synthesize", self.synthesize)  # type: ignore[arg-type]
        graph.add_edge(START, "retrieve")
        graph.add_edge("retrieve", "analyze")
        graph.add_edge("analyze", "plan")
        graph.add_conditional_edges("plan", self.fan_out_lenses, ["lens", END])
        graph.add_edge("lens", "gather")
        graph.add_conditional_edges("gather", self.fan_out_synthesis, ["synthesize", END])
        graph.add_edge("synthesize", END)
        return graph.compile()

    async def run(self) -> dict[str, Any]:
        """Run the whole request; the final state (findings, proposals, failed item keys)."""
        config: dict[str, Any] = {"recursion_limit": 100}
        if self.strategy == "max_concurrency":
            config["max_concurrency"] = MAX_CONCURRENCY
        state = await self.graph().ainvoke({}, config=config)
        self.counters.failed_items = list(state.get("failed") or [])
        return state
