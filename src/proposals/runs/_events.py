"""Typed run events: pydantic models with a literal ``type``, one union to parse them back.

Every event carries its run id, a per-run sequence number (1, 2, ...; a client that saw
``seq = n`` asks for ``after = n`` to resume) and the usage of the run so far. They are
stored as they are in the event log and serialised unchanged to the CLI, SSE and WebSocket.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..pipeline import FailedItem, Proposal, ProposalResult, RunStatus, UsageTotals

__all__ = [
    "BatchFinished",
    "BatchStarted",
    "CallEvent",
    "ItemFailed",
    "NodeFinished",
    "NodeStarted",
    "ProposalEvent",
    "RunEvent",
    "RunFinished",
    "RunStarted",
    "WarningEvent",
    "parse_event",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    seq: int = 0
    """Per-run sequence number, assigned when the event is emitted."""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    usage: UsageTotals = Field(default_factory=UsageTotals)
    """Usage of the whole run up to this event."""


class RunStarted(_Event):
    """The run began (or resumed, when ``resumed``)."""

    type: Literal["run_started"] = "run_started"
    countries: list[str]
    pairs: int
    """(country, profile) pairs to produce proposals for."""
    themes: int
    provider: str
    simulated: bool
    resumed: bool = False
    worker_id: str | None = None
    """The holder running it from here on (a worker, or the process that started it)."""
    attempt: int = 1
    """Which claim of the run this is: above 1 after a resume."""


class RunFinished(_Event):
    """The run ended. The last event of a run; ``result`` is the full result."""

    type: Literal["run_finished"] = "run_finished"
    status: RunStatus
    proposals: int
    failed: int
    elapsed_s: float
    result: ProposalResult | None = None
    error: str | None = None
    """Why the run failed, when ``status == 'failed'``."""


class NodeStarted(_Event):
    """A node began; ``total`` is the number of batches (or items) it will process."""

    type: Literal["node_started"] = "node_started"
    node: str
    total: int = 0


class NodeFinished(_Event):
    """A node finished all its batches."""

    type: Literal["node_finished"] = "node_finished"
    node: str
    done: int
    failed: int = 0


class BatchStarted(_Event):
    """One token-budgeted batch of a node was handed to the LLM."""

    type: Literal["batch_started"] = "batch_started"
    node: str
    batch: str
    items: int
    tokens: int = 0


class BatchFinished(_Event):
    """One batch finished; ``ok`` is false when all its items failed."""

    type: Literal["batch_finished"] = "batch_finished"
    node: str
    batch: str
    items: int
    ok: bool = True


class CallEvent(_Event):
    """One LLM call changed state (from the gateway's per-run subscription)."""

    type: Literal["call"] = "call"
    node: str | None = None
    phase: str
    """``started``, ``retry``, ``finished`` or ``failed``."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    detail: str | None = None
    in_flight: int = 0
    """Calls of this run in flight after this event."""


class ItemFailed(_Event):
    """An item still failed after retries; the run goes on without it."""

    type: Literal["item_failed"] = "item_failed"
    failure: FailedItem


class WarningEvent(_Event):
    """Something the user should know: truncation, budget, a dropped citation."""

    type: Literal["warning"] = "warning"
    kind: str
    """``truncated``, ``budget``, ``dropped_citation``, ``invalid_output``..."""
    message: str
    node: str | None = None


class ProposalEvent(_Event):
    """A finished proposal."""

    type: Literal["proposal"] = "proposal"
    proposal: Proposal


RunEvent = Annotated[
    RunStarted
    | RunFinished
    | NodeStarted
    | NodeFinished
    | BatchStarted
    | BatchFinished
    | CallEvent
    | ItemFailed
    | WarningEvent
    | ProposalEvent,
    Field(discriminator="type"),
]
"""Any run event, discriminated by ``type``."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(RunEvent)


def parse_event(data: dict[str, Any] | str | bytes) -> RunEvent:
    """An event back from its JSON (as stored in the log or sent over the wire)."""
    if isinstance(data, str | bytes):
        return _ADAPTER.validate_json(data)
    return _ADAPTER.validate_python(data)
