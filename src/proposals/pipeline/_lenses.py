"""The lens nodes B-E (``market_fit``, ``regulation``, ``feasibility``, ``positioning``): each
receives one packed batch of items through ``Send`` and states findings per item; ``collect``
joins them."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from langgraph.runtime import Runtime
from pydantic import BaseModel

from ..errors import BudgetExceeded, DatabaseError
from ..llm import call_splitting
from ..store import SearchHit
from ._calls import ask
from ._context import PipelineContext
from ._evidence import lens_out_tokens
from ._mapreduce import budget_stop, keep_cited, record_failure
from ._models import LENSES, Lens
from ._render import item_text, shown_ids, variables_text
from ._schemas import findings_schema
from ._state import LensInput, PipelineState

__all__ = ["LensNode", "collect", "lens_node", "run_batch"]


class LensNode(Protocol):
    """A lens node as LangGraph calls it: the ``Send`` payload, and the runtime by keyword."""

    __name__: str

    def __call__(
        self, state: LensInput, *, runtime: Runtime[PipelineContext]
    ) -> Awaitable[dict[str, Any]]: ...


def lens_node(lens: Lens) -> LensNode:
    """The node function of one lens; it receives one packed batch through ``Send``."""

    async def run(state: LensInput, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
        return await run_batch(runtime.context, lens, state["batch"], state["themes"])

    run.__name__ = lens
    return run


async def run_batch(
    ctx: PipelineContext,
    lens: Lens,
    batch: dict[str, Any],
    themes_list: list[dict[str, Any]],
    evidence: Mapping[int, SearchHit] | None = None,
) -> dict[str, Any]:
    """State update of one lens batch: its findings, failed items and warnings.

    ``evidence`` holds the batch's chunks when the caller has them (from planning); without
    it they are read back from the store.
    """
    req = ctx.request
    themes = {t["id"]: t for t in themes_list}
    items: list[dict[str, Any]] = batch["items"]
    warnings: list[str] = []
    ctx.reporter.batch_started(lens, batch["id"], len(items), batch["tokens"])
    ids = sorted({c for it in items for c in it["chunk_ids"]})
    if evidence is not None and all(c in evidence for c in ids):
        hits = [evidence[c] for c in ids]
    else:
        try:
            hits = await ctx.store.get_chunks(ids)
        except DatabaseError as exc:
            # The evidence of this batch could not be read: its items fail, the run goes on.
            ctx.reporter.batch_finished(lens, batch["id"], len(items), ok=False)
            lost = [record_failure(ctx, lens, it["key"], exc) for it in items]
            return {"failed": lost, "warnings": warnings, "lens_done": [lens]}
    texts = {h.chunk_id: h.text for h in hits}
    cites = {h.chunk_id: h.citation.model_dump() for h in hits}

    async def attempt(sub: list[dict[str, Any]]) -> tuple[BaseModel, set[int]]:
        material = "\n\n".join(
            item_text(k, it, themes[it["theme_id"]], texts) for k, it in enumerate(sub, 1)
        )
        messages = ctx.prompts.render(
            lens, items=material, brief=req.brief, variables=variables_text(req)
        )
        shown = shown_ids(material)
        schema = findings_schema(len(sub), ctx.findings_per_item, tuple(sorted(shown)))
        # Before the first answer: about four findings an item (the schema allows more).
        out = await ask(
            ctx,
            lens,
            messages,
            schema,
            lens_out_tokens(ctx, len(sub)),
            units=len(sub),
            prior=4 * ctx.finding_tokens,
        )
        return out, shown

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
        stop = budget_stop(ctx, lens, exc)
        return {**stop, "warnings": warnings + stop["warnings"]}
    findings: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome.error is not None:
            failures += [
                record_failure(ctx, lens, it["key"], outcome.error) for it in outcome.items
            ]
            continue
        if outcome.result is None:
            continue
        out, shown = outcome.result
        for k, it in enumerate(outcome.items, 1):
            for f in getattr(out, f"item_{k}", None) or []:
                if not f.statement.strip():
                    continue
                kept, warn = keep_cited(ctx, lens, f.citations, shown, it["key"])
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


async def collect(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Join after the lenses: report each lens finished."""
    ctx = runtime.context
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
