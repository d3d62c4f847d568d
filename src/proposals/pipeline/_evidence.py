"""Evidence planning: each (lens, theme, country, profile) item draws its own evidence by
hybrid search, and a country's items are packed into lens batches.

Batches hold items of one lens and one country (so a batch's citations stay within that
country), under the token budget of one call, and no more items than the output reserve can
answer; under a configured token quota the batches queued last may hold fewer
(:func:`batch_items`). Only chunk ids travel in the graph's state; the texts go with the
batch in memory.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from fractions import Fraction
from typing import Any

from ..embeddings import CachingEmbedder
from ..llm import pack
from ..store import SearchHit, Store
from ..tokens import count_tokens
from ._context import PipelineContext
from ._models import LENSES, Lens, Profile
from ._render import item_text, variables_text

__all__ = [
    "LENS_DOC_TYPES",
    "LENS_FOCUS",
    "Job",
    "batch_items",
    "caching_store",
    "lens_jobs",
    "lens_out_tokens",
    "limited",
    "pack_batches",
    "prefetch_queries",
    "search_jobs",
]

LENS_DOC_TYPES: dict[Lens, list[str] | None] = {
    "market_fit": None,
    "regulation": ["official"],
    "feasibility": ["technical_report"],
    "positioning": ["product_description"],
}
"""Document types each lens draws its evidence from (``None``: all)."""
LENS_FOCUS: dict[Lens, str] = {
    "market_fit": "customer demand, needs, behaviour, market size and adoption",
    "regulation": "regulation, rules, licences, consumer protection, limits and taxes",
    "feasibility": "technical infrastructure, payment rails, integration and operations",
    "positioning": "existing products, features, fees, prices and competitors",
}
SEARCH_CONCURRENCY = 6
TAIL_SHARE = Fraction(3, 5)
"""Share of a run's lens work, counted from its end, that :func:`batch_items` packs smaller."""

Job = tuple[Lens, str, Profile, dict[str, Any]]
"""One lens item to plan: lens, country, profile, theme."""


async def limited(factories: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
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


def batch_items(most: int, position: int, groups: int) -> int:
    """Most items in one batch of the ``(lens, country)`` group at ``position`` (0-based) of
    ``groups``, in the order the pipelined run queues lens calls (country by country, lens by
    lens), when the tail is shaped (see :func:`pack_batches`).

    Guided self-scheduling: once less than ``TAIL_SHARE`` of the groups is left (counting
    this one), items in proportion to the share left, rounded up, never more than ``most``:
    with ``most`` 3 and five countries, 3 items for the first three countries, 2 for the
    fourth, 1 for the last. The last calls a quota admits are then short ones, whose answers come
    back sooner (an answer's time grows with its length).
    """
    left = Fraction(groups - position, groups)  # exact: a share of 2/5 gives 2, not 3
    return max(1, min(most, math.ceil(most * left / TAIL_SHARE)))


def lens_jobs(
    ctx: PipelineContext, themes: list[dict[str, Any]], countries: list[str]
) -> list[Job]:
    """The lens items of ``countries``, lens by lens (the order batches are packed in)."""
    return [
        (lens, country, profile, theme)
        for lens in LENSES
        for country in countries
        for profile in ctx.request.profiles_for(country)
        for theme in themes
    ]


def caching_store(store: Store) -> Store:
    """``store`` searching through an embedder that embeds each distinct query once."""
    if store.embedder is None or isinstance(store.embedder, CachingEmbedder):
        return store
    return Store(store.database, CachingEmbedder(store.embedder), tenant=store.tenant)


def _query(lens: Lens, profile: Profile, theme: dict[str, Any]) -> str:
    return f"{theme['title']}. {theme['description']} {profile.name}. {LENS_FOCUS[lens]}"


async def prefetch_queries(store: Store, jobs: list[Job]) -> None:
    """Embed the distinct queries of ``jobs`` in one call (a query does not depend on the
    country). A local model's vector depends slightly on the batch it was computed in
    (bfloat16, padding), so a run embeds all its queries in this one batch whatever order it
    plans in: the same request finds the same evidence."""
    if isinstance(store.embedder, CachingEmbedder):
        await store.embedder.prefetch([_query(lens, p, t) for lens, _, p, t in jobs])


async def search_jobs(ctx: PipelineContext, store: Store, jobs: list[Job]) -> list[list[SearchHit]]:
    """Each job's evidence (hybrid search, country-filtered, the lens's document types): the
    jobs of one lens and country share a filter, so they go to the database as one batch."""
    await prefetch_queries(store, jobs)
    k = ctx.request.options.evidence_k
    groups: dict[tuple[Lens, str], list[int]] = {}
    for i, (lens, country, _, _) in enumerate(jobs):
        groups.setdefault((lens, country), []).append(i)

    def search(lens: Lens, country: str, members: list[int]) -> Any:
        queries = [_query(lens, jobs[i][2], jobs[i][3]) for i in members]
        return lambda: store.search_many(
            queries, k=k, country=country, doc_types=LENS_DOC_TYPES[lens]
        )

    found = await limited(
        [search(*key, members) for key, members in groups.items()], SEARCH_CONCURRENCY
    )
    results: list[list[SearchHit]] = [[] for _ in jobs]
    for members, hits in zip(groups.values(), found, strict=True):
        for i, one in zip(members, hits, strict=True):
            results[i] = one
    return results


def pack_batches(
    ctx: PipelineContext, jobs: list[Job], results: list[list[SearchHit]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Items with their evidence (cut to fit one call), packed per (lens, country).

    Batches are ``{id, lens, items, tokens}`` and numbered ``lens:country:n`` per group; the
    same jobs and hits always give the same batches.

    With a configured tokens-per-minute quota (``llm_tpm``) that covers the run's lens calls
    even at their caps (one minute of the quota admits them all, so the run's length is set
    by its chain of answers, not by the quota), the lens calls queued last are packed smaller
    (:func:`batch_items`): the quota admits the last of them well after the first, and the
    run waits for their answers before the last syntheses can begin. The extra prompts cost
    a few percent of the lens tokens and about half again as many lens calls, which is why
    it is not done where the quota, not the chain, sets the run's length, nor without a
    configured quota (the packing, and so the prompts a response cache holds, must not
    depend on what the provider happens to have said so far).
    """
    req = ctx.request
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
    grouped: dict[tuple[Lens, str], list[dict[str, Any]]] = {}
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
        tokens = count_tokens(item_text(1, item, theme, texts)) + 4
        while tokens > budget and item["chunk_ids"]:
            item["chunk_ids"] = item["chunk_ids"][:-1]
            tokens = count_tokens(item_text(1, item, theme, texts)) + 4
        if len(item["chunk_ids"]) < len(hits):
            msg = f"plan: evidence of {item['key']} cut to {len(item['chunk_ids'])} chunk(s) to fit the window"
            ctx.reporter.warning("truncated", msg, "plan")
            warnings.append(msg)
        item["tokens"] = tokens
        grouped.setdefault((lens, country), []).append(item)
    batches: list[dict[str, Any]] = []
    for (lens, country), items in grouped.items():
        packed = pack(
            items, budget=max(budgets[lens, max_items], 32), count=lambda it: it["tokens"]
        )
        n, most = 0, _most_items(ctx, lens, country, items, max_items)
        for group in (b.items for b in packed):
            for start in range(0, len(group), most):
                chunk = group[start : start + most]
                n += 1
                batches.append(
                    {
                        "id": f"{lens}:{country}:{n}",
                        "lens": lens,
                        "items": chunk,
                        "tokens": sum(it["tokens"] for it in chunk),
                    }
                )
    return batches, warnings


def _most_items(
    ctx: PipelineContext, lens: Lens, country: str, items: list[dict[str, Any]], most: int
) -> int:
    """Most items per batch of the ``(lens, country)`` group holding ``items``."""
    quota = ctx.gateway.config.tpm
    countries = ctx.request.countries
    groups = len(countries) * len(LENSES)
    # The whole run's lens calls at their caps, reckoned from this group (groups are alike;
    # each group decides from its own items, the same in the staged and pipelined paths).
    capped = groups * sum(it["tokens"] + lens_out_tokens(ctx, 1) for it in items)
    if quota is None or capped > quota:
        return most
    position = countries.index(country) * len(LENSES) + LENSES.index(lens)
    return batch_items(most, position, groups)
