"""The proposal pipeline: request/result models, prompt templates, the LangGraph graph.

retrieve → analyze (A: opportunity themes) → per country, pipelined: evidence planning →
market_fit (B) · regulation (C) · feasibility (D) · positioning (E) as token-budgeted batches
→ synthesize (per country x profile as soon as its findings are in, tree-reduced when over
the window). Runs are started by
:func:`proposals.runs.generate`; this package knows nothing of HTTP or storage of runs.
"""

from ._context import NullReporter, PipelineContext, Reporter
from ._flow import CallFlow, FlowWork
from ._graph import PipelineState, build_graph
from ._models import (
    LENSES,
    NODES,
    Citation,
    FailedItem,
    Finding,
    Lens,
    Profile,
    Proposal,
    ProposalRequest,
    ProposalResult,
    RunOptions,
    RunStatus,
    Theme,
    UsageTotals,
    load_profiles,
)
from ._prompts import PROMPT_NAMES, Prompts
from ._render import finding_order
from ._report import ACCOUNTING_COLUMNS, accounting_rows, render_markdown

__all__ = [
    "ACCOUNTING_COLUMNS",
    "LENSES",
    "NODES",
    "PROMPT_NAMES",
    "CallFlow",
    "Citation",
    "FailedItem",
    "Finding",
    "FlowWork",
    "Lens",
    "NullReporter",
    "PipelineContext",
    "PipelineState",
    "Profile",
    "Prompts",
    "Proposal",
    "ProposalRequest",
    "ProposalResult",
    "Reporter",
    "RunOptions",
    "RunStatus",
    "Theme",
    "UsageTotals",
    "accounting_rows",
    "build_graph",
    "finding_order",
    "load_profiles",
    "render_markdown",
]
