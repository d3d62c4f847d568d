"""The retrieval nodes: ``retrieve`` (material for node A) and ``plan`` (each lens item draws
its own evidence; items are packed into lens batches)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph.runtime import Runtime

from ..llm import pack
from ..store import SearchHit, Store
from ..tokens import count_tokens
from ._context import PipelineContext
from ._embedcache import PrefetchingEmbedder
from ._models import LENSES, Lens
from ._render import evidence_entry, item_text, variables_text
from ._state import PipelineState

__all__ = ["LENS_DOC_TYPES", "lens_out_tokens", "plan", "retrieve"]

LENS_DOC_TYPES: dict[Lens, list[str] | None] = {
    "market_fit": None,
    "regulation": ["official"],
    "feasibility": ["technical_report"],
    "positioning": ["product_description"],
}
"""Document types each lens draws its evidence from (``None``: all)."""
_LENS_FOCUS: dict[Lens, str] = {
    "market_fit": "customer demand, needs, behaviour, market size and adoption",
    "regulation": "regulation, rules, licences, consumer protection, limits and taxes",
    "feasibility": "technical infrastructure, payment rails, integration and operations",
    "positioning": "existing products, features, fees, prices and competitors",
}
_SEARCH_CONCURRENCY = 6


async def _limited(factories: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run database work with at most ``limit`` at once (the pool, not the LLM, bounds it)."""
    gate = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await factory()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(f)) for f in factories]
    return [t.result() for t in tasks]


def lens_out_tokens(ctx: PipelineContext, items: int) -> int:
    """``max_tokens`` of a lens call answering ``items`` items."""
    return min(ctx.output_reserve, items * ctx.findings_per_item * ctx.finding_tokens)


async def retrieve(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Hybrid search per country and lens (country-filtered): material for node A."""
    ctx = runtime.context
    req = ctx.request
    jobs = [(c, lens) for c in req.countries for lens in LENSES]
    ctx.reporter.node_started("retrieve", total=len(jobs))
    variables = " ".join(req.variables[k] for k in sorted(req.variables))

    def search(country: str, lens: Lens) -> Callable[[], Awaitable[list[SearchHit]]]:
        query = f"{req.brief}. {_LENS_FOCUS[lens]}. {variables}".strip()
        return lambda: ctx.store.search(
            query, k=req.options.retrieval_k, country=country, doc_types=LENS_DOC_TYPES[lens]
        )

    results = await _limited([search(c, lens) for c, lens in jobs], _SEARCH_CONCURRENCY)
    pool: dict[int, dict[str, Any]] = {}
    for hits in results:
        for hit in hits:
            pool.setdefault(hit.chunk_id, evidence_entry(hit))
    evidence = [pool[k] for k in sorted(pool)]
    warnings = []
    if not evidence:
        msg = "retrieve: no documents matched; ingest a corpus first (proposals ingest PATH)"
        ctx.reporter.warning("no_evidence", msg, "retrieve")
        warnings.append(msg)
    else:
        own = {
            c
            for (c, _), hits in zip(jobs, results, strict=True)
            for h in hits
            if h.citation.country == c
        }
        for country in req.countries:
            if country not in own:
                msg = (
                    f"retrieve: no documents of {country}'s own matched; its proposals rest on "
                    f"global documents only (ingest some with --country {country})"
                )
                ctx.reporter.warning("no_country_documents", msg, "retrieve")
                warnings.append(msg)
    ctx.reporter.node_finished("retrieve", done=len(jobs))
    return {"evidence": evidence, "warnings": warnings}


async def plan(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Draw each (lens, theme, country, profile) item's evidence and pack items into batches.

    Batches hold items of one lens and one country (so a batch's citations stay within that
    country), under the token budget of one call, and no more items than the output reserve
    can answer. Only chunk ids travel in the state; lens nodes read the texts back.
    """
    ctx = runtime.context
    req = ctx.request
    themes: list[dict[str, Any]] = state.get("themes") or []
    jobs = [
        (lens, country, profile, theme)
        for lens in LENSES
        for country in req.countries
        for profile in req.profiles_for(country)
        for theme in themes
    ]
    ctx.reporter.node_started("plan", total=len(jobs))

    def query_of(lens: Lens, profile: Any, theme: dict[str, Any]) -> str:
        return f"{theme['title']}. {theme['description']} {profile.name}. {_LENS_FOCUS[lens]}"

    # The query text does not depend on the country: embed each distinct one once, up front.
    store = ctx.store
    if store.embedder is not None:
        embedder = PrefetchingEmbedder(store.embedder)
        await embedder.prefetch([query_of(lens, p, t) for lens, _, p, t in jobs])
        store = Store(store.database, embedder, tenant=store.tenant)

    def search(
        lens: Lens, country: str, profile: Any, theme: dict[str, Any]
    ) -> Callable[[], Awaitable[list[SearchHit]]]:
        query = query_of(lens, profile, theme)
        return lambda: store.search(
            query, k=req.options.evidence_k, country=country, doc_types=LENS_DOC_TYPES[lens]
        )

    results = await _limited([search(*job) for job in jobs], _SEARCH_CONCURRENCY)
    per_item_out = ctx.findings_per_item * ctx.finding_tokens
    max_items = max(1, ctx.output_reserve // per_item_out)
    # The fixed part of a lens prompt does not depend on the item: count it once per lens.
    budgets = {
        (lens, items): ctx.input_budget(
            ctx.prompts.render(lens, items="", brief=req.brief, variables=variables_text(req)),
            lens_out_tokens(ctx, items),
        )
        for lens in LENSES
        for items in (1, max_items)
    }
    warnings: list[str] = []
    grouped: dict[tuple[Lens, str], list[tuple[dict[str, Any], str]]] = {}
    for (lens, country, profile, theme), hits in zip(jobs, results, strict=True):
        texts = {h.chunk_id: h.text for h in hits}
        item = {
            "key": f"{lens} {theme['id']} {country}/{profile.name}",
            "lens": lens,
            "theme_id": theme["id"],
            "country": country,
            "profile": profile.model_dump(),
            "chunk_ids": [h.chunk_id for h in hits],
        }
        budget = budgets[lens, 1]
        text = item_text(1, item, theme, texts)
        while count_tokens(text) + 4 > budget and item["chunk_ids"]:
            item["chunk_ids"] = item["chunk_ids"][:-1]
            text = item_text(1, item, theme, texts)
        if len(item["chunk_ids"]) < len(hits):
            msg = f"plan: evidence of {item['key']} cut to {len(item['chunk_ids'])} chunk(s) to fit the window"
            ctx.reporter.warning("truncated", msg, "plan")
            warnings.append(msg)
        item["tokens"] = count_tokens(text) + 4
        grouped.setdefault((lens, country), []).append((item, text))
    batches: list[dict[str, Any]] = []
    for (lens, country), entries in grouped.items():
        budget = budgets[lens, max_items]
        packed = pack(
            [e[0] for e in entries], budget=max(budget, 32), count=lambda it: it["tokens"]
        )
        for group in (b.items for b in packed):
            for start in range(0, len(group), max_items):
                chunk = group[start : start + max_items]
                batches.append(
                    {
                        "id": f"{lens}:{country}:{len(batches) + 1}",
                        "lens": lens,
                        "items": chunk,
                        "tokens": sum(it["tokens"] for it in chunk),
                    }
                )
    ctx.reporter.node_finished("plan", done=len(jobs))
    for lens in LENSES:
        ctx.reporter.node_started(lens, total=sum(1 for b in batches if b["lens"] == lens))
    pairs = [{"country": c, "profile": p.model_dump()} for c, p in req.pairs()]
    return {"lens_batches": batches, "pairs": pairs, "warnings": warnings}
