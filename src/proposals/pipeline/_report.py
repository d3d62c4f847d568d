"""The Markdown report of a run: proposals grouped by country and profile, with citations."""

from __future__ import annotations

from ..llm import UsageTotals
from ._models import Citation, ProposalResult

__all__ = ["ACCOUNTING_COLUMNS", "accounting_rows", "render_markdown"]

ACCOUNTING_COLUMNS = (
    "calls",
    "cached",
    "failed",
    "retries",
    "tokens in",
    "tokens out",
    "cached tokens",
    "cost $",
    "wall s",
)
"""Columns of :func:`accounting_rows` after the row's name."""


def accounting_rows(by: dict[str, UsageTotals]) -> list[list[str]]:
    """One row of text cells per node or model (name first), then a total row."""

    def cells(name: str, u: UsageTotals) -> list[str]:
        return [
            name,
            str(u.calls),
            str(u.cached_calls),
            str(u.failed_calls),
            str(u.retries),
            f"{u.prompt_tokens:,}",
            f"{u.completion_tokens:,}",
            f"{u.cached_tokens:,}",
            f"{u.cost_usd:.4f}",
            f"{u.wall_s:.1f}",
        ]

    rows = [cells(name, u) for name, u in by.items()]
    if len(by) > 1:
        total = UsageTotals(
            **{
                field: sum(getattr(u, field) for u in by.values())
                for field in UsageTotals.model_fields
                if field != "wall_s"
            }
        )
        rows.append([*cells("total", total)[:-1], ""])
    return rows


_SIMULATED = (
    "> **SIMULATED TEXT.** No language model wrote this report: the offline simulator built "
    "every answer from sentences of the prompts (the retrieved documents). Structure, "
    "citations and scale are real; the wording is not advice. Configure `OPENAI_API_KEY`, "
    "Azure OpenAI or `OPENAI_BASE_URL` to use a real model."
)


def _cite(c: Citation) -> str:
    return f"[#{c.chunk_id}] {c.label()}"


def render_markdown(result: ProposalResult) -> str:
    """The report as Markdown text."""
    req = result.request
    lines: list[str] = [f"# Product proposals: {req.brief}", ""]
    if result.simulated:
        lines += [_SIMULATED, ""]
    lines += [
        f"- Run: `{result.run_id}` — status **{result.status}**"
        + (f" ({result.stop_reason})" if result.stop_reason else ""),
        f"- Provider: {result.provider}",
        f"- Countries: {', '.join(req.countries)}",
        f"- Variables: {', '.join(f'{k}={v}' for k, v in sorted(req.variables.items())) or 'none'}",
        f"- Usage: {result.usage.calls} calls ({result.usage.cached_calls} cached), "
        f"{result.usage.prompt_tokens:,} tokens in, {result.usage.completion_tokens:,} out, "
        f"${result.usage.cost_usd:.4f}; {result.calls} LLM calls in all; {result.elapsed_s:.1f} s",
        "",
    ]
    if result.themes:
        lines += ["## Opportunity themes", ""]
        for t in result.themes:
            lines.append(f"- **{t.id} {t.title}** — {t.description}")
        lines.append("")
    for country in req.countries:
        lines += [f"## {country}", ""]
        for profile in req.profiles_for(country):
            lines += [f"### {profile.name}", ""]
            if profile.description:
                lines += [f"_{profile.description}_", ""]
            proposals = result.proposals_for(country, profile.name)
            if not proposals:
                lines += ["_No proposal was produced for this profile (see Failures)._", ""]
            for p in proposals:
                lines += [
                    f"#### {p.rank}. {p.title} — score {p.score:.0f}/100",
                    "",
                    p.summary,
                    "",
                    f"- **Value proposition:** {p.value_proposition}",
                    "- **Key features:** " + "; ".join(p.key_features),
                    f"- **Regulatory notes:** {p.regulatory_notes}",
                    f"- **Feasibility:** {p.feasibility}",
                    f"- **Pricing and positioning:** {p.pricing_and_positioning}",
                    "- **Risks:** " + "; ".join(p.risks),
                    f"- **Why this score:** {p.score_reason}",
                    "",
                    "Sources:",
                    "",
                ]
                lines += [f"- {_cite(c)}" for c in p.citations] or ["- (none)"]
                lines.append("")
    for title, by in (("node", result.usage_by_node), ("model", result.usage_by_model)):
        if by:
            lines += [f"## Accounting per {title}", ""]
            lines.append("| " + " | ".join((title, *ACCOUNTING_COLUMNS)) + " |")
            lines.append("|---" * (len(ACCOUNTING_COLUMNS) + 1) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in accounting_rows(by)]
            lines.append("")
    if result.failed:
        lines += [
            "## Failures",
            "",
            "These items failed after retries; the rest of the run went on.",
            "",
        ]
        lines += [f"- `{f.node}` {f.item}: {f.error_type}: {f.error}" for f in result.failed]
        lines.append("")
    if result.warnings:
        lines += ["## Warnings", ""]
        shown = result.warnings[:50]
        lines += [f"- {w}" for w in shown]
        if len(result.warnings) > len(shown):
            lines.append(f"- … and {len(result.warnings) - len(shown)} more (see the JSON)")
        lines.append("")
    return "\n".join(lines)
