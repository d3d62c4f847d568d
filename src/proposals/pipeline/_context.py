"""What the graph's nodes get at run time besides their state: services and a reporter.

None of this is checkpointed. The gateway, the store and the reporter are passed through
LangGraph's runtime context, so a resumed run gets fresh ones and the state stays plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..observe import RunTrace
from ..tokens import estimate_prompt_tokens
from ._flow import CallFlow
from ._models import FailedItem, Proposal, ProposalRequest
from ._prompts import Prompts
from ._schedule import RunSchedule
from ._sizes import OutputSizer

if TYPE_CHECKING:
    from ..llm import Budget, LLMGateway
    from ..store import Store

__all__ = ["NullReporter", "PipelineContext", "Reporter"]

_SPARE_TOKENS = 23
"""Kept free beyond the provider's count of the prompt and the answer (margin for the
separators packed material adds; sized so packing is what it was before the estimate moved
to :func:`proposals.tokens.estimate_prompt_tokens`)."""


class Reporter(Protocol):
    """Receives progress from the nodes. Methods are synchronous and must not block."""

    def node_started(self, node: str, total: int) -> None: ...
    def node_finished(self, node: str, done: int, failed: int = 0) -> None: ...
    def batch_started(self, node: str, batch: str, items: int, tokens: int) -> None: ...
    def batch_finished(self, node: str, batch: str, items: int, ok: bool) -> None: ...
    def item_failed(self, failure: FailedItem) -> None: ...
    def warning(self, kind: str, message: str, node: str | None = None) -> None: ...
    def proposal(self, proposal: Proposal) -> None: ...


class NullReporter:
    """A reporter that ignores everything (for callers that only want the result)."""

    def node_started(self, node: str, total: int) -> None:
        pass

    def node_finished(self, node: str, done: int, failed: int = 0) -> None:
        pass

    def batch_started(self, node: str, batch: str, items: int, tokens: int) -> None:
        pass

    def batch_finished(self, node: str, batch: str, items: int, ok: bool) -> None:
        pass

    def item_failed(self, failure: FailedItem) -> None:
        pass

    def warning(self, kind: str, message: str, node: str | None = None) -> None:
        pass

    def proposal(self, proposal: Proposal) -> None:
        pass


@dataclass
class PipelineContext:
    """Run-scoped services and limits handed to every node through the runtime context."""

    run_id: str
    request: ProposalRequest
    gateway: LLMGateway
    store: Store
    prompts: Prompts
    default_model: str
    context_window: int
    output_reserve: int
    reporter: Reporter = field(default_factory=NullReporter)
    budget: Budget | None = None
    tenant: str = "local"
    """The tenant the run belongs to: its searches see only that tenant's documents."""
    finding_tokens: int = 110
    """Expected output tokens of one finding; sizes ``max_tokens`` of lens calls."""
    findings_per_item: int = 12
    """Upper bound asked of the model for findings per lens item."""
    proposal_tokens: int = 1400
    """Expected output tokens of one proposal; sizes ``max_tokens`` of synthesis calls."""
    extra: dict[str, Any] = field(default_factory=dict)
    trace: RunTrace = field(default_factory=RunTrace)
    """The run's node spans (no-op without an OpenTelemetry SDK)."""
    schedule: RunSchedule = field(default_factory=RunSchedule)
    """Planning turns and progress of the pipelined lens and synthesis work."""
    sizes: OutputSizer = field(default_factory=OutputSizer)
    """Expected answer lengths per node, learned from the run's answers."""
    flow: CallFlow | None = None
    """Records which calls each call waited for; set by plans, None in runs."""

    def model_for(self, node: str) -> str:
        """The model a node uses: the request's choice, else the default."""
        return self.request.options.models.get(node, self.default_model)

    def input_budget(self, messages: list[dict[str, str]], output_tokens: int) -> int:
        """Tokens left for packed material after the fixed prompt and the answer."""
        fixed = estimate_prompt_tokens(messages)
        return self.context_window - fixed - output_tokens - _SPARE_TOKENS
