"""Configuration of one gateway (one endpoint)."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import Settings
from ._usage import ModelPrice, load_prices

__all__ = ["GatewayConfig"]


def _default(field: str) -> Any:
    """The default of a :class:`Settings` field: settings and gateway share one value."""
    return Settings.model_fields[field].default


class GatewayConfig(BaseModel):
    """Everything an :class:`LLMGateway` needs to know about its endpoint and its limits.

    Build it with :meth:`from_settings` at the edge; override fields for tests or benchmarks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- endpoint ---------------------------------------------------------------------------
    model: str = _default("llm_model")
    """Default model (Azure: deployment name) when a call names none."""
    base_url: str | None = None
    """OpenAI-compatible base URL (``.../v1``); ``None``: api.openai.com."""
    api_key: str | None = None
    """Key for ``base_url``. A local server without auth may leave it unset."""
    azure_endpoint: str | None = None
    """Azure OpenAI resource endpoint; when set the Azure client is used."""
    azure_api_key: str | None = None
    azure_api_version: str = _default("azure_openai_api_version")
    simulated: bool = False
    """The endpoint is the offline simulator (reported as such in stats)."""
    schema_max_length: bool | None = _default("llm_schema_max_length")
    """Send ``maxLength`` in answer schemas. ``None``: yes, except to OpenAI's own API and
    Azure OpenAI, whose strict structured outputs list no ``maxLength`` among the string
    keywords they accept (``enum`` and ``maxItems`` are sent everywhere)."""

    # --- concurrency ------------------------------------------------------------------------
    concurrency_min: int = Field(default=_default("llm_concurrency_min"), ge=1)
    """Floor of the adaptive limit."""
    concurrency_max: int = Field(default=_default("llm_concurrency_max"), ge=1)
    """Ceiling of the adaptive limit (high: the provider's push-back and the rate budgets
    are what bound calls in flight, not this)."""
    concurrency_start: int = Field(default=_default("llm_concurrency_start"), ge=1)
    """Initial limit."""
    decrease_factor: float = Field(default=0.7, gt=0, lt=1)
    """Multiplier applied to the limit on 429 / refused or reset connection / timeout."""
    decrease_cooldown_s: float = Field(default=0.0, ge=0)
    """Least time between two cuts (on top of the one-cut-per-window rule)."""
    ceiling_margin: float = Field(default=0.95, gt=0, le=1)
    """Share of a learned connection ceiling the limit regrows to quickly."""
    pool_margin: int = Field(default=16, ge=0)
    """HTTP connections beyond ``concurrency_max`` in the pool."""
    pool_keepalive: int = Field(default=32, ge=0)
    """Idle connections the pool keeps open. Few on purpose: the HTTP pool checks every
    pooled connection on each request (idle ones with a socket poll), so hundreds of idle
    connections left by a burst cost the client more CPU per call than reconnecting; and
    a provider that caps connections counts idle ones too."""

    # --- rate budgets -----------------------------------------------------------------------
    rpm: int | None = Field(default=None, ge=1)
    """Requests per minute (``None``: unknown until learned from headers)."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens per minute (``None``: unknown until learned from headers)."""
    learn_rate_limits: bool = True
    """Learn limits and remaining budget from ``x-ratelimit-*`` headers."""
    rate_window_s: float = Field(default=60.0, gt=0)
    """Wall seconds of the provider's "minute" for configured limits (60 unless simulated
    with time compression; learned refill rates do not depend on it)."""
    rate_burst_s: float = Field(default=10.0, gt=0)
    """Seconds' worth of a configured limit that may be spent at once."""

    # --- deadlines and retries --------------------------------------------------------------
    timeout_s: float = Field(default=_default("llm_timeout_s"), gt=0)
    """Deadline of one HTTP attempt."""
    stall_factor: float | None = Field(default=2.0, gt=1)
    """A first attempt is given up (and sent again) after this many times the 99th
    percentile of its node's answer times so far (or of their seconds per token, times its
    ``max_tokens``), when that is shorter than ``timeout_s`` (a stalled request then costs
    seconds, not the whole deadline; see ``StallWatch``). ``None``: every attempt waits
    ``timeout_s``."""
    max_retries: int = Field(default=_default("llm_max_retries"), ge=0)
    """Retries after the first attempt, for retryable errors only."""
    deadline_s: float = Field(default=_default("llm_call_deadline_s"), gt=0)
    """Deadline of one whole call: admission (rate budget, concurrency slot), every attempt
    and every backoff. Past it the call fails with ``RetriesExhausted(cause="deadline")``."""
    backoff_base_s: float = Field(default=0.25, gt=0)
    """First backoff step; doubles per retry (jittered), unless the provider says when."""
    backoff_max_s: float = Field(default=8.0, gt=0)
    max_retry_after_s: float = Field(default=120.0, gt=0)
    """Longest ``retry-after`` honoured."""

    # --- accounting -------------------------------------------------------------------------
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Price overrides and additions (USD per 1M tokens), merged over the defaults."""
    trace_content: bool = False
    """Record prompt and completion text on call spans (only when the user opted in)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.concurrency_min > self.concurrency_max:
            raise ValueError("concurrency_min must not exceed concurrency_max")
        return self

    @property
    def is_azure(self) -> bool:
        return self.azure_endpoint is not None

    @property
    def endpoint(self) -> str:
        """Identity of the endpoint answers come from, part of every response-cache key.

        Every simulator is one endpoint (``simulator``: its answers depend only on the request,
        and its loopback port changes per process), so a resumed simulated run still finds
        its answers; a real endpoint is its URL, so a cached answer is never served by another
        provider than the one that gave it, and a simulated one never to a real provider.
        """
        if self.simulated:
            return "simulator"
        if self.azure_endpoint:
            return f"azure:{self.azure_endpoint.rstrip('/')}"
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")

    @property
    def sends_max_length(self) -> bool:
        """Whether answer schemas keep their ``maxLength`` bounds (see ``schema_max_length``)."""
        if self.schema_max_length is not None:
            return self.schema_max_length
        if self.simulated:
            return True
        return not (self.azure_endpoint or "api.openai.com" in (self.base_url or "api.openai.com"))

    def fit_format(self, response_format: dict[str, Any]) -> dict[str, Any]:
        """``response_format`` as this endpoint accepts it: without ``maxLength`` where it
        is not sent (see :attr:`sends_max_length`)."""
        return response_format if self.sends_max_length else _without(response_format, "maxLength")

    @property
    def start_limit(self) -> int:
        return min(max(self.concurrency_start, self.concurrency_min), self.concurrency_max)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GatewayConfig:
        """The gateway configuration named by ``settings``, with ``overrides`` applied."""
        values: dict[str, Any] = {
            "model": settings.llm_model,
            "base_url": settings.openai_base_url,
            "api_key": settings.openai_api_key,
            "azure_endpoint": settings.azure_openai_endpoint,
            "azure_api_key": settings.azure_openai_api_key,
            "azure_api_version": settings.azure_openai_api_version,
            "concurrency_min": settings.llm_concurrency_min,
            "concurrency_max": settings.llm_concurrency_max,
            "concurrency_start": settings.llm_concurrency_start,
            "rpm": settings.llm_rpm,
            "tpm": settings.llm_tpm,
            "timeout_s": settings.llm_timeout_s,
            "max_retries": settings.llm_max_retries,
            "deadline_s": settings.llm_call_deadline_s,
            "trace_content": settings.trace_content,
            "schema_max_length": settings.llm_schema_max_length,
            "prices": {**load_prices(settings.prices_file), **load_prices(settings.prices)},
        }
        values.update(overrides)
        return cls(**values)


def _without(node: Any, keyword: str) -> Any:
    """A JSON document without ``keyword`` anywhere."""
    if isinstance(node, dict):
        return {k: _without(v, keyword) for k, v in node.items() if k != keyword}
    if isinstance(node, list):
        return [_without(v, keyword) for v in node]
    return node
