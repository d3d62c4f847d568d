"""``synthesize``: ranked proposals per (country, profile) from the themes and the lenses'
findings; ``finish`` joins the pairs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from ..errors import BudgetExceeded, ProposalsError
from ..tokens import truncate_to_tokens
from ._calls import ask
from ._context import PipelineContext
from ._mapreduce import Reduce, budget_stop, keep_cited, map_reduce, pack_texts, record_failure
from ._models import LENSES, Proposal
from ._render import by_score, common_values, draft_text, finding_line, finding_order, shown_ids
from ._schemas import proposals_schema
from ._state import PipelineState, SynthesisInput

__all__ = ["NoFindings", "finish", "synthesize"]


class NoFindings(ProposalsError):
    """A pair had nothing to synthesise from (every item of it failed), or the model proposed
    nothing. Recorded as the pair's failure (``error_type`` ``NoFindings``)."""


async def synthesize(state: SynthesisInput, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Ranked proposals for one (country, profile) from the themes and the lenses' findings.

    All findings in one call when they fit; otherwise drafts per packed batch, merged by a
    tree reduce until one call has seen every draft.
    """
    ctx = runtime.context
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
    common = {**common_values(req), "country": country, "n": n, "profile": who}
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
            shown = shown_ids(material)
            schema = proposals_schema(n, tuple(sorted(shown)))
            out = await ask(
                ctx,
                "synthesize",
                messages,
                schema,
                out_tokens,
                units=n,
                prior=ctx.proposal_tokens / 2,  # before the first answer: half the allowance
            )
            drafts = []
            for p in out.proposals:  # type: ignore[attr-defined]
                kept, warn = keep_cited(ctx, "synthesize", p.citations, shown, label)
                warnings.extend(warn)
                d = p.model_dump()
                d["citations"] = kept
                d["score"] = max(0.0, min(100.0, float(p.score)))
                if d["title"].strip():
                    drafts.append(d)
            return by_score(drafts)

        return call

    failures: list[dict[str, Any]] = []
    drafts: list[dict[str, Any]] = []
    try:
        if not findings:
            raise NoFindings(f"no findings to synthesise for {label}")
        budget = ctx.input_budget(
            ctx.prompts.render("synthesize", themes=theme_text, material="", **common), out_tokens
        )
        groups, warn = pack_texts(
            ctx, "synthesize", findings, [finding_line(f) for f in findings], budget
        )
        warnings += warn
        _, drafts, more_warnings = await map_reduce(
            ctx,
            "synthesize",
            groups,
            answer("synthesize"),
            failures,
            keep=n,
            label=f"synthesize {label}",
            reduce=Reduce(
                render=draft_text,
                messages=lambda m: ctx.prompts.render("synthesize_reduce", material=m, **common),
                call=answer("synthesize_reduce"),
                out_tokens=out_tokens,
                fallback=lambda ds: by_score(ds)[:n],
                label=f"proposals {label}",
            ),
        )
        warnings += more_warnings
    except BudgetExceeded as exc:
        ctx.reporter.batch_finished("synthesize", label, len(findings), ok=False)
        stop = budget_stop(ctx, "synthesize", exc)
        return {**stop, "failed": failures, "warnings": warnings + stop["warnings"]}
    except NoFindings as exc:
        failures.append(record_failure(ctx, "synthesize", f"synthesize {label}", exc))
    proposals = []
    for rank, d in enumerate(by_score(drafts)[:n], start=1):
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
            record_failure(
                ctx, "synthesize", f"synthesize {label}", NoFindings("the model proposed nothing")
            )
        )
    return {"proposals": proposals, "failed": failures, "warnings": warnings, "synth_done": [label]}


async def finish(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Join after synthesis: report it finished (and, after the pipelined path, planning and
    the lenses if this process did not see them complete, e.g. in a resumed run)."""
    ctx = runtime.context
    failed = state.get("failed") or []
    planned = Counter(state.get("planned") or [])
    if planned:
        items = len(state.get("themes") or []) * len(LENSES) * len(ctx.request.pairs())
        ctx.schedule.report_finished(ctx, "plan", done=items)
        for lens in LENSES:
            lost = sum(1 for f in failed if f["node"] == lens)
            ctx.schedule.report_finished(ctx, lens, done=planned[lens], failed=lost)
    lost = sum(1 for f in failed if f["node"] == "synthesize")
    ctx.reporter.node_finished("synthesize", done=len(state.get("synth_done") or []), failed=lost)
    return {}
