"""Node A, ``analyze``: opportunity themes, mapped over packed evidence and merged to N
distinct themes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from ..errors import BudgetExceeded
from ..tokens import count_tokens
from ._calls import ask
from ._context import PipelineContext
from ._mapreduce import (
    Reduce,
    answer_groups,
    budget_stop,
    keep_cited,
    map_reduce,
    pack_texts,
)
from ._render import common_values, shown_ids, theme_line
from ._schemas import themes_schema
from ._state import PipelineState

__all__ = ["analyze"]

_THEME_TOKENS = 160


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


def _theme_out(
    ctx: PipelineContext, theme: Any, shown: set[int], where: str, warnings: list[str]
) -> dict[str, Any]:
    kept, warn = keep_cited(ctx, "analyze", theme.citations, shown, where)
    warnings.extend(warn)
    return {"title": theme.title, "description": theme.description, "citations": kept}


async def analyze(state: PipelineState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Node A: opportunity themes, mapped over packed evidence, merged to N distinct themes."""
    ctx = runtime.context
    req = ctx.request
    n = req.options.themes
    evidence: list[dict[str, Any]] = state.get("evidence") or []
    if not evidence:
        ctx.reporter.node_started("analyze", total=0)
        ctx.reporter.node_finished("analyze", done=0)
        return {"themes": []}
    common = {**common_values(req), "n": n}
    by_id = {e["id"]: e for e in evidence}
    out_tokens = min(ctx.context_window // 2, max(ctx.output_reserve, n * _THEME_TOKENS))
    budget = ctx.input_budget(ctx.prompts.render("analyze_map", evidence="", **common), out_tokens)
    lines = [f"[#{e['id']}] {e['text']}" for e in evidence]
    groups, warnings = pack_texts(ctx, "analyze", evidence, lines, budget)
    ctx.reporter.node_started("analyze", total=len(groups) + (len(groups) > 1))
    counter = iter(range(1, 1_000_000))

    def answer(template: str) -> Callable[[list[tuple[Any, str]]], Awaitable[list[dict[str, Any]]]]:
        async def call(items: list[tuple[Any, str]]) -> list[dict[str, Any]]:
            material = "\n".join(text for _, text in items)
            shown = shown_ids(material)
            batch = f"{template}-{next(counter)}"
            ctx.reporter.batch_started("analyze", batch, len(items), count_tokens(material))
            ok = False
            try:
                key = "evidence" if template == "analyze_map" else "material"
                messages = ctx.prompts.render(template, **{key: material}, **common)
                schema = themes_schema(n, tuple(sorted(shown)))
                out = await ask(ctx, "analyze", messages, schema, out_tokens)
                ok = True
            finally:
                ctx.reporter.batch_finished("analyze", batch, len(items), ok)
            return [_theme_out(ctx, t, shown, f"analyze {batch}", warnings) for t in out.themes]  # type: ignore[attr-defined]

        return call

    failures: list[dict[str, Any]] = []
    try:
        candidates, themes, more_warnings = await map_reduce(
            ctx,
            "analyze",
            groups,
            answer("analyze_map"),
            failures,
            keep=n,
            label="analyze evidence",
            reduce=Reduce(
                render=theme_line,
                messages=lambda m: ctx.prompts.render("analyze_merge", material=m, **common),
                call=answer("analyze_merge"),
                out_tokens=out_tokens,
                fallback=lambda es: _dedupe_themes(es, n),
                label="themes",
            ),
            usable=lambda t: bool(t["title"].strip()),
        )
        warnings += more_warnings
        chosen = _dedupe_themes(themes, n)
        if chosen and len(chosen) < n:
            # The model answered with fewer distinct themes than the request asks for: the
            # candidates it left out fill the list first, then one more merge call over what
            # there is asks again for n distinct themes.
            chosen = _dedupe_themes(chosen + candidates, n)
        if chosen and len(chosen) < n:
            more, more_failures, _ = await answer_groups(
                ctx,
                "analyze",
                [[(t, theme_line(t)) for t in chosen]],
                answer("analyze_merge"),
                keep=n,
                label="themes top-up",
            )
            failures += more_failures
            chosen = _dedupe_themes(chosen + more, n)
    except BudgetExceeded as exc:
        ctx.reporter.node_finished("analyze", done=0, failed=len(failures))
        stop = budget_stop(ctx, "analyze", exc)
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
