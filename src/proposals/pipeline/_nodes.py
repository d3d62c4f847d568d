"""The nodes of the proposal graph.

State holds plain data (dicts and lists) so the PostgreSQL checkpointer can store it; services
come from the runtime context (:class:`PipelineContext`). Each node is deterministic given its
inputs and the model's answers: inputs are sorted, prompts carry no run ids or timestamps.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from langgraph.runtime import Runtime
from pydantic import BaseModel

from ..errors import BudgetExceeded, ProposalsError
from ..llm import pack
from ..store import SearchHit, Store
from ..tokens import count_tokens, truncate_to_tokens
from ._calls import (
    Outcome,
    ask,
    call_splitting,
    findings_schema,
    gather_isolated,
    proposals_schema,
    themes_schema,
)
from ._context import PipelineContext
from ._embedcache import PrefetchingEmbedder
from ._models import LENSES, FailedItem, Lens, Proposal, ProposalRequest
from ._state import LensInput, PipelineState, SynthesisInput

__all__ = [
    "LENS_DOC_TYPES",
    "analyze",
    "collect",
    "finding_order",
    "finish",
    "lens_node",
    "plan",
    "retrieve",
    "synthesize",
]

E = TypeVar("E")

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
_THEME_TOKENS = 160
_CITE = re.compile(r"\[#(\d+)\]")
_SEARCH_CONCURRENCY = 6


# --------------------------------------------------------------------------------------------
# helpers


def _ctx(runtime: Runtime[PipelineContext]) -> PipelineContext:
    return runtime.context


def _variables(request: ProposalRequest) -> str:
    if not request.variables:
        return "(none)"
    return "\n".join(f"- {k}: {request.variables[k]}" for k in sorted(request.variables))


def _profiles_text(request: ProposalRequest) -> str:
    seen: dict[str, str] = {}
    for country in request.countries:
        for p in request.profiles_for(country):
            seen.setdefault(p.name, p.description)
    return "; ".join(f"{name} ({desc})" if desc else name for name, desc in sorted(seen.items()))


def _common(request: ProposalRequest) -> dict[str, str]:
    return {
        "brief": request.brief,
        "countries": ", ".join(request.countries),
        "profiles": _profiles_text(request),
        "variables": _variables(request),
    }


def _evidence(hit: SearchHit) -> dict[str, Any]:
    return {"id": hit.chunk_id, "text": hit.text, "citation": _citation(hit)}


def _citation(hit: SearchHit) -> dict[str, Any]:
    c = hit.citation
    return {
        "chunk_id": c.chunk_id,
        "title": c.title,
        "path": c.path,
        "page": c.page,
        "section": c.section,
        "country": c.country,
        "doc_type": c.doc_type,
    }


def _shown_ids(text: str) -> set[int]:
    return {int(m) for m in _CITE.findall(text)}


def _keep_cited(
    ctx: PipelineContext, node: str, cited: Sequence[int], shown: set[int], where: str
) -> tuple[list[int], list[str]]:
    """Citations that were in the evidence given to the call; the rest are dropped, flagged."""
    kept = list(dict.fromkeys(int(i) for i in cited if int(i) in shown))
    dropped = sorted({int(i) for i in cited} - shown)
    warnings: list[str] = []
    if dropped:
        msg = f"{where}: dropped citation(s) {dropped} not in the evidence given to the call"
        ctx.reporter.warning("dropped_citation", msg, node)
        warnings.append(msg)
    return kept, warnings


def _pack_texts(
    ctx: PipelineContext, node: str, entries: Sequence[E], texts: Sequence[str], budget: int
) -> tuple[list[list[tuple[E, str]]], list[str]]:
    """Group ``(entry, text)`` pairs into ordered batches under ``budget`` tokens.

    An entry too large alone has its text truncated to the budget, with a recorded warning.
    """
    warnings: list[str] = []
    budget = max(budget, 32)
    fitted: list[tuple[E, str, int]] = []
    for entry, text in zip(entries, texts, strict=True):
        n = count_tokens(text) + 1
        if n > budget:
            text = truncate_to_tokens(text, budget - 1)
            msg = f"{node}: an input of {n} tokens was truncated to {budget} to fit the window"
            ctx.reporter.warning("truncated", msg, node)
            warnings.append(msg)
            n = budget
        fitted.append((entry, text, n))
    batches = pack(fitted, budget=budget, count=lambda f: f[2])
    return [[(f[0], f[1]) for f in b] for b in _batch_items(batches)], warnings


async def _answer_groups(
    ctx: PipelineContext,
    node: str,
    groups: list[list[tuple[E, str]]],
    call: Callable[[list[tuple[E, str]]], Awaitable[list[E]]],
    *,
    keep: int,
    label: str,
    on_failure: Callable[[list[tuple[E, str]]], list[E]] = lambda _: [],
) -> tuple[list[E], list[dict[str, Any]], int]:
    """Answer every group concurrently (split in half on overflow); failures are recorded.

    Each answer contributes at most ``keep`` entries. Returns (entries, failures, number of
    answers); more answers than one means they still need merging. :class:`BudgetExceeded`
    is raised once the siblings have finished.
    """
    results = await gather_isolated([partial(call_splitting, g, call) for g in groups])
    merged: list[E] = []
    failures: list[dict[str, Any]] = []
    answers = 0
    for i, result in enumerate(results):
        if isinstance(result, BudgetExceeded):
            raise result
        outcomes: list[Outcome[tuple[E, str], list[E]]]
        if isinstance(result, ProposalsError):
            outcomes = [Outcome(groups[i], error=result)]
        else:
            outcomes = result
        for outcome in outcomes:
            if outcome.error is not None:
                where = f"{label} part {i + 1}/{len(groups)}"
                failures.append(_record_failure(ctx, node, where, outcome.error))
                merged.extend(on_failure(outcome.items)[:keep])
            else:
                answers += 1
                merged.extend((outcome.result or [])[:keep])
    return merged, failures, answers


def _batch_items(batches: Sequence[Any]) -> list[list[Any]]:
    return [list(getattr(b, "items", b)) for b in batches]


def _failure(node: str, item: str, exc: BaseException) -> dict[str, Any]:
    return FailedItem(
        node=node, item=item, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__
    ).model_dump()


def _record_failure(
    ctx: PipelineContext, node: str, item: str, exc: BaseException
) -> dict[str, Any]:
    failure = _failure(node, item, exc)
    ctx.reporter.item_failed(FailedItem.model_validate(failure))
    return failure


def _budget_stop(ctx: PipelineContext, node: str, exc: BaseException) -> dict[str, Any]:
    msg = f"{node}: budget reached, the run stops with partial results ({exc})"
    ctx.reporter.warning("budget", msg, node)
    return {"stops": [str(exc)], "warnings": [msg]}


async def _limited(factories: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run database work with at most ``limit`` at once (the pool, not the LLM, bounds it)."""
    gate = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await factory()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(f)) for f in factories]
    return [t.result() for t in tasks]


# --------------------------------------------------------------------------------------------
# retrieve


async def retrieve(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Hybrid search per country and lens (country-filtered): material for node A."""
    ctx = _ctx(runtime)
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
            pool.setdefault(hit.chunk_id, _evidence(hit))
    evidence = [pool[k] for k in sorted(pool)]
    warnings = []
    if not evidence:
        msg = "retrieve: no documents matched; ingest a corpus first (proposals ingest PATH)"
        ctx.reporter.warning("no_evidence", msg, "retrieve")
        warnings.append(msg)
    ctx.reporter.node_finished("retrieve", done=len(jobs))
    return {"evidence": evidence, "warnings": warnings}


# --------------------------------------------------------------------------------------------
# tree reduce (themes merge and synthesis)


async def _reduce(
    ctx: PipelineContext,
    node: str,
    entries: list[E],
    *,
    render: Callable[[E], str],
    messages: Callable[[str], list[dict[str, str]]],
    call: Callable[[list[tuple[E, str]]], Awaitable[list[E]]],
    keep: int,
    out_tokens: int,
    fallback: Callable[[list[E]], list[E]],
    label: str,
) -> tuple[list[E], list[dict[str, Any]], list[str]]:
    """Merge ``entries`` with LLM calls until one call has seen them all (a tree reduce).

    Each level packs the entries into batches under the window; every batch's answer keeps
    at most ``keep`` entries. A level that cannot shrink the input (each entry alone nearly
    fills the window) ends with ``fallback`` instead of looping. A failed batch passes its
    entries on through ``fallback``. Returns (entries, failures, warnings);
    :class:`BudgetExceeded` propagates.
    """
    failures: list[dict[str, Any]] = []
    warnings: list[str] = []
    level = 0
    while True:
        level += 1
        budget = ctx.input_budget(messages(""), out_tokens)
        groups, warn = _pack_texts(ctx, node, entries, [render(e) for e in entries], budget)
        warnings += warn
        if len(groups) > 1 and len(groups) >= len(entries):
            msg = f"{label}: inputs too large to merge in the window; kept the best {keep} unmerged"
            ctx.reporter.warning("reduce_fallback", msg, node)
            return fallback(entries), failures, [*warnings, msg]
        merged, failed, answers = await _answer_groups(
            ctx,
            node,
            groups,
            call,
            keep=keep,
            label=f"{label} merge level {level}",
            on_failure=lambda items: fallback([e for e, _ in items]),
        )
        failures += failed
        if answers <= 1 and len(groups) == 1:
            return merged, failures, warnings
        if len(merged) >= len(entries):
            msg = f"{label}: merging did not shrink the input; kept the best {keep}"
            ctx.reporter.warning("reduce_fallback", msg, node)
            return fallback(merged), failures, [*warnings, msg]
        entries = merged


# --------------------------------------------------------------------------------------------
# analyze (node A)


def _theme_line(theme: dict[str, Any]) -> str:
    cites = " ".join(f"[#{i}]" for i in theme["citations"])
    return f"- {theme['title']}: {theme['description']} {cites}".rstrip()


def _norm_title(title: str) -> str:
    return " ".join(re.findall(r"\w+", title.lower()))


def _dedupe_themes(themes: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for t in themes:
        key = _norm_title(t["title"])
        if key and key not in seen:
            seen.add(key)
            out.append(t)
    return out[:n]


async def analyze(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Node A: opportunity themes, mapped over packed evidence, merged to N distinct themes."""
    ctx = _ctx(runtime)
    req = ctx.request
    n = req.options.themes
    evidence: list[dict[str, Any]] = state.get("evidence") or []
    if not evidence:
        ctx.reporter.node_started("analyze", total=0)
        ctx.reporter.node_finished("analyze", done=0)
        return {"themes": []}
    common = {**_common(req), "n": n}
    by_id = {e["id"]: e for e in evidence}
    out_tokens = min(ctx.context_window // 2, max(ctx.output_reserve, n * _THEME_TOKENS))
    budget = ctx.input_budget(ctx.prompts.render("analyze_map", evidence="", **common), out_tokens)
    lines = [f"[#{e['id']}] {e['text']}" for e in evidence]
    groups, warnings = _pack_texts(ctx, "analyze", evidence, lines, budget)
    ctx.reporter.node_started("analyze", total=len(groups) + (len(groups) > 1))
    counter = iter(range(1, 1_000_000))

    def answer(template: str) -> Callable[[list[tuple[Any, str]]], Awaitable[list[dict[str, Any]]]]:
        async def call(items: list[tuple[Any, str]]) -> list[dict[str, Any]]:
            material = "\n".join(text for _, text in items)
            batch = f"{template}-{next(counter)}"
            ctx.reporter.batch_started("analyze", batch, len(items), count_tokens(material))
            ok = False
            try:
                key = "evidence" if template == "analyze_map" else "material"
                messages = ctx.prompts.render(template, **{key: material}, **common)
                out = await ask(ctx, "analyze", messages, themes_schema(n), out_tokens)
                ok = True
            finally:
                ctx.reporter.batch_finished("analyze", batch, len(items), ok)
            shown = _shown_ids(material)
            return [_theme_out(ctx, t, shown, f"analyze {batch}", warnings) for t in out.themes]  # type: ignore[attr-defined]

        return call

    failures: list[dict[str, Any]] = []
    try:
        candidates, failures, answers = await _answer_groups(
            ctx, "analyze", groups, answer("analyze_map"), keep=n, label="analyze evidence"
        )
        themes = [t for t in candidates if t["title"].strip()]
        if answers > 1 and themes:
            themes, more_failures, more_warnings = await _reduce(
                ctx,
                "analyze",
                themes,
                render=_theme_line,
                messages=lambda m: ctx.prompts.render("analyze_merge", material=m, **common),
                call=answer("analyze_merge"),
                keep=n,
                out_tokens=out_tokens,
                fallback=lambda es: _dedupe_themes(es, n),
                label="themes",
            )
            failures += more_failures
            warnings += more_warnings
        chosen = _dedupe_themes(themes, n)
        if chosen and len(chosen) < n:
            # The model answered with fewer distinct themes than the request asks for: the
            # candidates it left out fill the list first, then one more merge call over what
            # there is asks again for n distinct themes.
            chosen = _dedupe_themes(chosen + candidates, n)
        if chosen and len(chosen) < n:
            more, more_failures, _ = await _answer_groups(
                ctx,
                "analyze",
                [[(t, _theme_line(t)) for t in chosen]],
                answer("analyze_merge"),
                keep=n,
                label="themes top-up",
            )
            failures += more_failures
            chosen = _dedupe_themes(chosen + more, n)
    except BudgetExceeded as exc:
        ctx.reporter.node_finished("analyze", done=0, failed=len(failures))
        stop = _budget_stop(ctx, "analyze", exc)
        return {**stop, "failed": failures, "warnings": warnings + stop["warnings"], "themes": []}
    final = []
    for i, t in enumerate(chosen, start=1):
        cites = [by_id[c]["citation"] for c in t["citations"] if c in by_id]
        final.append(
            {
                "id": f"T{i}",
                "title": t["title"].strip(),
                "description": t["description"].strip(),
                "citations": cites,
            }
        )
    ctx.reporter.node_finished("analyze", done=len(groups), failed=len(failures))
    return {"themes": final, "failed": failures, "warnings": warnings}


def _theme_out(
    ctx: PipelineContext, theme: Any, shown: set[int], where: str, warnings: list[str]
) -> dict[str, Any]:
    kept, warn = _keep_cited(ctx, "analyze", theme.citations, shown, where)
    warnings.extend(warn)
    return {"title": theme.title, "description": theme.description, "citations": kept}


# --------------------------------------------------------------------------------------------
# plan: each lens item draws its own evidence; items are packed into batches


def _item_text(
    index: int, item: dict[str, Any], theme: dict[str, Any], texts: dict[int, str]
) -> str:
    profile = item["profile"]
    head = (
        f"[item_{index}] Theme {theme['id']}: {theme['title']}\n{theme['description']}\n"
        f"Country: {item['country']}\nProfile: {profile['name']}"
        + (f" ({profile['description']})" if profile["description"] else "")
    )
    evidence = "\n".join(f"[#{cid}] {texts[cid]}" for cid in item["chunk_ids"] if cid in texts)
    return f"{head}\nEvidence:\n{evidence or '(none found)'}"


def _lens_out_tokens(ctx: PipelineContext, items: int) -> int:
    return min(ctx.output_reserve, items * ctx.findings_per_item * ctx.finding_tokens)


async def plan(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Draw each (lens, theme, country, profile) item's evidence and pack items into batches.

    Batches hold items of one lens and one country (so a batch's citations stay within that
    country), under the token budget of one call, and no more items than the output reserve
    can answer. Only chunk ids travel in the state; lens nodes read the texts back.
    """
    ctx = _ctx(runtime)
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
        budget = ctx.input_budget(
            ctx.prompts.render(lens, items="", brief=req.brief, variables=_variables(req)),
            _lens_out_tokens(ctx, 1),
        )
        text = _item_text(1, item, theme, texts)
        while count_tokens(text) + 4 > budget and item["chunk_ids"]:
            item["chunk_ids"] = item["chunk_ids"][:-1]
            text = _item_text(1, item, theme, texts)
        if len(item["chunk_ids"]) < len(hits):
            msg = f"plan: evidence of {item['key']} cut to {len(item['chunk_ids'])} chunk(s) to fit the window"
            ctx.reporter.warning("truncated", msg, "plan")
            warnings.append(msg)
        item["tokens"] = count_tokens(text) + 4
        grouped.setdefault((lens, country), []).append((item, text))
    batches: list[dict[str, Any]] = []
    for (lens, country), entries in grouped.items():
        budget = ctx.input_budget(
            ctx.prompts.render(lens, items="", brief=req.brief, variables=_variables(req)),
            _lens_out_tokens(ctx, max_items),
        )
        packed = _batch_items(
            pack([e[0] for e in entries], budget=max(budget, 32), count=lambda it: it["tokens"])
        )
        for group in packed:
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


# --------------------------------------------------------------------------------------------
# lenses (nodes B-E)


class LensNode(Protocol):
    """A lens node as LangGraph calls it: the ``Send`` payload, and the runtime by keyword."""

    __name__: str

    def __call__(
        self, state: LensInput, *, runtime: Runtime[PipelineContext]
    ) -> Awaitable[dict[str, Any]]: ...


def lens_node(lens: Lens) -> LensNode:
    """The node function of one lens; it receives one packed batch through ``Send``."""

    async def run(state: LensInput, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
        ctx = _ctx(runtime)
        req = ctx.request
        batch = state["batch"]
        themes = {t["id"]: t for t in state["themes"]}
        items: list[dict[str, Any]] = batch["items"]
        hits = await ctx.store.get_chunks(sorted({c for it in items for c in it["chunk_ids"]}))
        texts = {h.chunk_id: h.text for h in hits}
        cites = {h.chunk_id: _citation(h) for h in hits}
        warnings: list[str] = []
        ctx.reporter.batch_started(lens, batch["id"], len(items), batch["tokens"])

        async def attempt(sub: list[dict[str, Any]]) -> tuple[BaseModel, set[int]]:
            material = "\n\n".join(
                _item_text(k, it, themes[it["theme_id"]], texts) for k, it in enumerate(sub, 1)
            )
            messages = ctx.prompts.render(
                lens, items=material, brief=req.brief, variables=_variables(req)
            )
            schema = findings_schema(len(sub), ctx.findings_per_item)
            return await ask(
                ctx, lens, messages, schema, _lens_out_tokens(ctx, len(sub))
            ), _shown_ids(material)

        def shrink(item: dict[str, Any]) -> dict[str, Any] | None:
            if len(item["chunk_ids"]) <= 1:
                return None
            smaller = {**item, "chunk_ids": item["chunk_ids"][: len(item["chunk_ids"]) // 2]}
            msg = f"{lens}: evidence of {item['key']} halved after a context overflow"
            ctx.reporter.warning("truncated", msg, lens)
            warnings.append(msg)
            return smaller

        try:
            outcomes = await call_splitting(items, attempt, shrink=shrink)
        except BudgetExceeded as exc:
            ctx.reporter.batch_finished(lens, batch["id"], len(items), ok=False)
            stop = _budget_stop(ctx, lens, exc)
            return {**stop, "warnings": warnings + stop["warnings"]}
        findings: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for outcome in outcomes:
            if outcome.error is not None:
                failures += [
                    _record_failure(ctx, lens, it["key"], outcome.error) for it in outcome.items
                ]
                continue
            if outcome.result is None:
                continue
            out, shown = outcome.result
            for k, it in enumerate(outcome.items, 1):
                for f in getattr(out, f"item_{k}", None) or []:
                    if not f.statement.strip():
                        continue
                    kept, warn = _keep_cited(ctx, lens, f.citations, shown, it["key"])
                    warnings += warn
                    findings.append(
                        {
                            "lens": lens,
                            "theme_id": it["theme_id"],
                            "country": it["country"],
                            "profile": it["profile"]["name"],
                            "text": f.statement.strip(),
                            "citations": [cites[c] for c in kept if c in cites],
                        }
                    )
        ctx.reporter.batch_finished(
            lens, batch["id"], len(items), ok=not failures or len(failures) < len(items)
        )
        return {"findings": findings, "failed": failures, "warnings": warnings, "lens_done": [lens]}

    run.__name__ = lens
    return run


async def collect(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Join after the lenses: report each lens finished."""
    ctx = _ctx(runtime)
    batches = state.get("lens_batches") or []
    failed = state.get("failed") or []
    for lens in LENSES:
        total = sum(1 for b in batches if b["lens"] == lens)
        ctx.reporter.node_finished(
            lens, done=total, failed=sum(1 for f in failed if f["node"] == lens)
        )
    if not state.get("stops"):
        ctx.reporter.node_started("synthesize", total=len(state.get("pairs") or []))
    return {}


async def finish(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Join after synthesis: report it finished."""
    ctx = _ctx(runtime)
    failed = sum(1 for f in state.get("failed") or [] if f["node"] == "synthesize")
    ctx.reporter.node_finished("synthesize", done=len(state.get("synth_done") or []), failed=failed)
    return {}


# --------------------------------------------------------------------------------------------
# synthesize


def finding_order(f: dict[str, Any]) -> tuple[Any, ...]:
    """A total order on findings, independent of the order parallel batches finished in."""
    return (int(f["theme_id"][1:]), LENSES.index(f["lens"]), f["country"], f["profile"], f["text"])


def _finding_line(f: dict[str, Any]) -> str:
    cites = " ".join(f"[#{c['chunk_id']}]" for c in f["citations"])
    return f"- ({f['theme_id']}, {f['lens']}) {f['text']} {cites}".rstrip()


def _draft_text(d: dict[str, Any]) -> str:
    cites = " ".join(f"[#{c}]" for c in d["citations"])
    return (
        f"* {d['title']} (score {d['score']:.0f}: {d['score_reason']})\n"
        f"  Summary: {d['summary']}\n  Value: {d['value_proposition']}\n"
        f"  Features: {'; '.join(d['key_features'])}\n  Regulation: {d['regulatory_notes']}\n"
        f"  Feasibility: {d['feasibility']}\n  Pricing and positioning: {d['pricing_and_positioning']}\n"
        f"  Risks: {'; '.join(d['risks'])}\n  Evidence: {cites}"
    )


def _by_score(drafts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(drafts, key=lambda d: (-d["score"], d["title"]))


async def synthesize(state: SynthesisInput, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Ranked proposals for one (country, profile) from the themes and the lenses' findings.

    All findings in one call when they fit; otherwise drafts per packed batch, merged by a
    tree reduce until one call has seen every draft.
    """
    ctx = _ctx(runtime)
    req = ctx.request
    country = state["country"]
    profile = state["profile"]
    label = f"{country}/{profile['name']}"
    n = req.options.proposals_per_pair
    themes = state["themes"]
    findings = sorted(state["findings"], key=finding_order)
    lookup = {c["chunk_id"]: c for f in findings for c in f["citations"]}
    ctx.reporter.batch_started("synthesize", label, len(findings), 0)
    who = profile["name"] + (f" ({profile['description']})" if profile["description"] else "")
    common = {**_common(req), "country": country, "n": n, "profile": who}
    theme_text = "\n".join(
        f"{t['id']}: {t['title']} — {truncate_to_tokens(t['description'], 80)}" for t in themes
    )
    warnings: list[str] = []
    out_tokens = min(ctx.context_window // 2, max(ctx.output_reserve, n * ctx.proposal_tokens))

    def answer(template: str) -> Callable[[list[tuple[Any, str]]], Awaitable[list[dict[str, Any]]]]:
        async def call(items: list[tuple[Any, str]]) -> list[dict[str, Any]]:
            material = "\n".join(text for _, text in items)
            extra = {"themes": theme_text} if template == "synthesize" else {}
            messages = ctx.prompts.render(template, material=material, **extra, **common)
            out = await ask(ctx, "synthesize", messages, proposals_schema(n), out_tokens)
            shown = _shown_ids(material)
            drafts = []
            for p in out.proposals:  # type: ignore[attr-defined]
                kept, warn = _keep_cited(ctx, "synthesize", p.citations, shown, label)
                warnings.extend(warn)
                d = p.model_dump()
                d["citations"] = kept
                d["score"] = max(0.0, min(100.0, float(p.score)))
                if d["title"].strip():
                    drafts.append(d)
            return _by_score(drafts)

        return call

    failures: list[dict[str, Any]] = []
    drafts: list[dict[str, Any]] = []
    try:
        if not findings:
            raise _NoFindings(f"no findings to synthesise for {label}")
        budget = ctx.input_budget(
            ctx.prompts.render("synthesize", themes=theme_text, material="", **common), out_tokens
        )
        groups, warn = _pack_texts(
            ctx, "synthesize", findings, [_finding_line(f) for f in findings], budget
        )
        warnings += warn
        drafts, failures, answers = await _answer_groups(
            ctx, "synthesize", groups, answer("synthesize"), keep=n, label=f"synthesize {label}"
        )
        if answers > 1 and drafts:
            drafts, more_failures, more_warnings = await _reduce(
                ctx,
                "synthesize",
                drafts,
                render=_draft_text,
                messages=lambda m: ctx.prompts.render("synthesize_reduce", material=m, **common),
                call=answer("synthesize_reduce"),
                keep=n,
                out_tokens=out_tokens,
                fallback=lambda ds: _by_score(ds)[:n],
                label=f"proposals {label}",
            )
            failures += more_failures
            warnings += more_warnings
    except BudgetExceeded as exc:
        ctx.reporter.batch_finished("synthesize", label, len(findings), ok=False)
        stop = _budget_stop(ctx, "synthesize", exc)
        return {**stop, "failed": failures, "warnings": warnings + stop["warnings"]}
    except _NoFindings as exc:
        failures.append(_record_failure(ctx, "synthesize", f"synthesize {label}", exc))
    proposals = []
    for rank, d in enumerate(_by_score(drafts)[:n], start=1):
        proposal = Proposal(
            rank=rank,
            country=country,
            profile=profile["name"],
            title=d["title"].strip(),
            summary=d["summary"],
            value_proposition=d["value_proposition"],
            key_features=d["key_features"],
            regulatory_notes=d["regulatory_notes"],
            feasibility=d["feasibility"],
            pricing_and_positioning=d["pricing_and_positioning"],
            risks=d["risks"],
            score=d["score"],
            score_reason=d["score_reason"],
            citations=[lookup[c] for c in d["citations"] if c in lookup],
        )
        ctx.reporter.proposal(proposal)
        proposals.append(proposal.model_dump(mode="json"))
    ctx.reporter.batch_finished("synthesize", label, len(findings), ok=bool(proposals))
    if not proposals and not failures:
        failures.append(
            _record_failure(
                ctx, "synthesize", f"synthesize {label}", _NoFindings("the model proposed nothing")
            )
        )
    return {"proposals": proposals, "failed": failures, "warnings": warnings, "synth_done": [label]}


class _NoFindings(ProposalsError):
    """A pair had nothing to synthesise from (every item of it failed)."""
