"""Per-call events, delivered to the listeners of the call's run (``LLMGateway.subscribe``).

Small pydantic models with a literal ``type``: serialised as they are to SSE, WebSocket and
the CLI.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ._usage import Usage

__all__ = ["CallEvent", "CallFailed", "CallFinished", "CallRetry", "CallStarted"]


class _CallEventBase(BaseModel):
    call_id: int
    """Sequence number of the call within this gateway."""
    run_id: str | None = None
    node: str | None = None
    model: str
    ts: float = Field(default_factory=time.time)
    """Unix time the event happened."""


class CallStarted(_CallEventBase):
    """A call was accepted by the gateway (it may still wait for capacity)."""

    type: Literal["call_started"] = "call_started"


class CallRetry(_CallEventBase):
    """An attempt failed with a retryable error; the call waits and tries again."""

    type: Literal["call_retry"] = "call_retry"
    attempt: int
    """The attempt that failed (1 for the first)."""
    reason: str
    """``rate_limit``, ``connection``, ``timeout``, ``server_error_503``…"""
    wait_s: float
    """Seconds until the next attempt."""


class CallFinished(_CallEventBase):
    """The call was answered (by the provider, or from the cache)."""

    type: Literal["call_finished"] = "call_finished"
    usage: Usage
    cached: bool
    attempts: int
    """HTTP attempts made (0 for a cache hit)."""
    duration_s: float
    answer_tokens: int | None = None
    """Completion tokens of the answer returned alone (``usage`` also counts an answer cut
    short and asked again); ``None`` when unknown."""


class CallFailed(_CallEventBase):
    """The call failed for good."""

    type: Literal["call_failed"] = "call_failed"
    error: str
    """The error's message."""
    error_type: str
    """Class name of the error, e.g. ``RetriesExhausted``."""


CallEvent = Annotated[
    CallStarted | CallRetry | CallFinished | CallFailed, Field(discriminator="type")
]
"""Any call event (a discriminated union on ``type``)."""
