"""The retrieval nodes: ``retrieve`` (material for node A) and ``plan`` (every lens item's
evidence, packed into lens batches, before any lens call: the stage-by-stage path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from ..store import SearchHit
from ._context import PipelineContext
from ._evidence import (
    LENS_DOC_TYPES,
    LENS_FOCUS,
    SEARCH_CONCURRENCY,
    caching_store,
    lens_jobs,
    limited,
    pack_batches,
    search_jobs,
)
from ._models import LENSES, Lens
from ._render import evidence_entry
from ._state import PipelineState

__all__ = ["plan", "retrieve"]


async def retrieve(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Hybrid search per country and lens (country-filtered): material for node A."""
    ctx = runtime.context
    req = ctx.request
    jobs = [(c, lens) for c in req.countries for lens in LENSES]
    ctx.reporter.node_started("retrieve", total=len(jobs))
    variables = " ".join(req.variables[k] for k in sorted(req.variables))
    # A lens's query is the same for every country: embedded once (alone, as before).
    store = caching_store(ctx.store)

    def search(country: str, lens: Lens) -> Callable[[], Awaitable[list[SearchHit]]]:
        query = f"{req.brief}. {LENS_FOCUS[lens]}. {variables}".strip()
        return lambda: store.search(
            query, k=req.options.retrieval_k, country=country, doc_types=LENS_DOC_TYPES[lens]
        )

    results = await limited([search(c, lens) for c, lens in jobs], SEARCH_CONCURRENCY)
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

    The stage-by-stage path (``build_graph(pipelined=False)``, and checkpoints written before
    the pipelined one existed): every search before the first lens call.
    """
    ctx = runtime.context
    req = ctx.request
    themes: list[dict[str, Any]] = state.get("themes") or []
    jobs = lens_jobs(ctx, themes, req.countries)
    ctx.reporter.node_started("plan", total=len(jobs))
    results = await search_jobs(ctx, caching_store(ctx.store), jobs)
    batches, warnings = pack_batches(ctx, jobs, results)
    ctx.reporter.node_finished("plan", done=len(jobs))
    for lens in LENSES:
        ctx.reporter.node_started(lens, total=sum(1 for b in batches if b["lens"] == lens))
    pairs = [{"country": c, "profile": p.model_dump()} for c, p in req.pairs()]
    return {"lens_batches": batches, "pairs": pairs, "warnings": warnings}
