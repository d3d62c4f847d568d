"""What a plan says: per node and in total, the calls, tokens, cost and wall time a run would
take, which figures are estimates and from what, and the budget warnings."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..pipeline import ProposalRequest

__all__ = ["NodePlan", "Plan", "PlanLimits", "render_plan"]


class NodePlan(BaseModel):
    """One node of the graph as the plan expects it to run."""

    calls: int = 0
    """LLM calls the node would make."""
    prompt_tokens: int = 0
    """Input tokens, as the provider counts them."""
    completion_tokens: int = 0
    """Output tokens (an estimate: the offline simulator's answers stand in for the model's)."""
    cost_usd: float = 0.0
    """At the price table's rates (``PROPOSALS_PRICES`` / ``_PRICES_FILE`` override it)."""
    wall_s: float = 0.0
    """Expected seconds from the node's first call (or work) to its last one's end."""
    input_exact: bool = False
    """True when the input tokens are known before any LLM answers (they depend only on the
    corpus and the request)."""


class PlanLimits(BaseModel):
    """The provider limits and latency the wall time was scheduled under."""

    name: str
    """``simulator PROFILE`` or ``configured provider``."""
    rpm: int | None = None
    tpm: int | None = None
    max_connections: int | None = None
    concurrency_max: int
    ttft_s: float
    per_token_s: float
    time_scale: float = 1.0
    """Wall seconds per simulated second (simulator only)."""


class Plan(BaseModel):
    """What a run of ``request`` would take, worked out without calling the LLM: the request
    was retrieved and packed exactly as a run does it, and replayed through the real LLM
    gateway with the offline simulator's answers standing in for the model's."""

    request: ProposalRequest
    provider: str
    """The endpoint the run would use."""
    calls: int
    """Total LLM calls (the result JSON of a run carries the same field)."""
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    wall_s: float
    """Expected wall time of the run's graph (the result's ``elapsed_s``)."""
    by_node: dict[str, NodePlan]
    themes: int
    """Themes analyze is expected to give (asked for: ``request.options.themes``)."""
    lens_items: int
    lens_batches: int
    findings: int
    """Findings the lenses are expected to state (they decide the synthesis calls)."""
    limits: PlanLimits
    estimates: list[str] = Field(default_factory=list)
    """Which figures are estimates, and from what."""
    warnings: list[str] = Field(default_factory=list)
    """Budget warnings first, then what the pipeline itself would warn about."""
    over_budget: bool = False
    """The run would exceed its token or cost budget (and stop ``stopped_budget``)."""
    planned_in_s: float = 0.0
    """How long making this plan took."""


def render_plan(plan: Plan) -> str:
    """The plan as plain text: a table per node, totals, estimates and warnings."""
    header = ["node", "calls", "tokens in", "tokens out", "cost $", "wall s"]
    rows = [header]
    for node, n in plan.by_node.items():
        rows.append(
            [
                node,
                f"{n.calls:,}",
                f"{n.prompt_tokens:,}" + ("" if n.input_exact or not n.calls else "~"),
                f"{n.completion_tokens:,}~" if n.calls else "0",
                f"{n.cost_usd:.4f}",
                f"{n.wall_s:.1f}",
            ]
        )
    rows.append(
        [
            "total",
            f"{plan.calls:,}",
            f"{plan.prompt_tokens:,}",
            f"{plan.completion_tokens:,}",
            f"{plan.cost_usd:.4f}",
            f"{plan.wall_s:.1f}",
        ]
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"plan: {plan.lens_items:,} lens items in {plan.lens_batches:,} batches, "
        f"{plan.calls:,} LLM calls, {plan.total_tokens:,} tokens, ${plan.cost_usd:.4f}, "
        f"about {plan.wall_s:.0f} s under {plan.limits.name}",
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    lines.append("  (~ estimated: depends on what the model answers)")
    lines += [f"estimate: {e}" for e in plan.estimates]
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)
