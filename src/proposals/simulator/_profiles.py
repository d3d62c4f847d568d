"""Named simulator profiles: provider capacity and behaviour as data."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError

__all__ = ["PROFILES", "SimulatorProfile", "get_profile"]


class SimulatorProfile(BaseModel):
    """What one simulated provider allows and how it behaves.

    Durations are in simulated seconds and are multiplied by :attr:`time_scale` on the wall
    clock (latency *and* the rate-limit window), so ``time_scale=0.01`` plays a minute of
    provider time in 0.6 s while keeping every ratio between latency, RPM and TPM intact.
    Headers such as ``retry-after-ms`` are always stated in wall-clock time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    """Profile name, shown in ``/sim/stats`` and the model list."""
    max_connections: int | None = Field(default=None, ge=1)
    """Open TCP connections accepted at once; further ones are reset (RST). None: no cap."""
    rpm: int | None = Field(default=None, ge=1)
    """Requests per (simulated) minute; beyond it HTTP 429. None: no limit."""
    tpm: int | None = Field(default=None, ge=1)
    """Tokens per (simulated) minute, charged as prompt + ``max_tokens`` (or the actual
    completion when ``max_tokens`` is absent), as OpenAI estimates; beyond it HTTP 429."""
    burst_s: float = Field(default=10.0, gt=0, le=60)
    """The rate buckets hold this many seconds' worth of the per-minute limits, so a burst
    cannot spend a whole minute's allowance at once (providers enforce sub-minute periods)."""
    context_window: int = Field(default=32_768, ge=16)
    """Tokens per request (prompt + requested completion) for models not listed below."""
    context_windows: dict[str, int] = Field(default_factory=dict)
    """Per-model context windows overriding :attr:`context_window`."""
    models: list[str] = Field(default_factory=lambda: ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"])
    """Model ids listed by ``GET /v1/models`` (any model name is accepted in requests)."""
    ttft_s: float = Field(default=0.6, ge=0)
    """Simulated time to the first token."""
    per_token_s: float = Field(default=0.015, ge=0)
    """Simulated time per output token (0.015 s is about 67 tokens/s)."""
    time_scale: float = Field(default=1.0, gt=0)
    """Wall seconds per simulated second (latency and rate windows)."""
    list_mean: float = Field(default=9.0, ge=0)
    """Mean length of generated JSON arrays at the outer level (bounded by the schema)."""
    nested_list_mean: float = Field(default=3.0, ge=0)
    """Mean length of arrays nested inside another array's items."""
    citations_mean: float = Field(default=3.0, ge=0)
    """Mean number of chunk ids put in a ``citation``/``chunk`` array."""
    text_sentences: float = Field(default=6.0, ge=1)
    """Mean number of prompt sentences in a plain-text answer."""
    fault_500: float = Field(default=0.0, ge=0, le=1)
    """Share of admitted requests answered with HTTP 500."""
    fault_503: float = Field(default=0.0, ge=0, le=1)
    """Share of admitted requests answered with HTTP 503 (overloaded)."""
    fault_reset: float = Field(default=0.0, ge=0, le=1)
    """Share of admitted requests whose connection is reset mid-response."""
    fault_stall: float = Field(default=0.0, ge=0, le=1)
    """Share of admitted requests that stall (no response) for :attr:`stall_s`."""
    stall_s: float = Field(default=600.0, gt=0)
    """Wall seconds a stalled request hangs before its connection is dropped (not scaled:
    it must outlast the client's timeout)."""

    def window_for(self, model: str) -> int:
        """Context window of ``model``."""
        return self.context_windows.get(model, self.context_window)

    def latency_s(self, output_tokens: int) -> float:
        """Wall-clock seconds one request producing ``output_tokens`` takes."""
        return (self.ttft_s + self.per_token_s * output_tokens) * self.time_scale

    def theoretical_rps(self, prompt_tokens: int, output_tokens: int) -> float:
        """Upper bound on sustained requests per wall second for requests of this shape.

        The least of: RPM, TPM divided by tokens per request, and (Little's law) the
        connection cap divided by the latency of one request. ``inf`` when nothing binds.
        """
        minute = 60.0 * self.time_scale
        bounds = [math.inf]
        if self.rpm is not None:
            bounds.append(self.rpm / minute)
        if self.tpm is not None:
            bounds.append(self.tpm / minute / max(1, prompt_tokens + output_tokens))
        latency = self.latency_s(output_tokens)
        if self.max_connections is not None and latency > 0:
            bounds.append(self.max_connections / latency)
        return min(bounds)


_TIER1 = SimulatorProfile(name="tier1", max_connections=100, rpm=2_000, tpm=2_000_000)

# Latency of a small hosted model (gpt-4o-mini), shared by the quota-shaped profiles below.
# Time to first token ~0.4 s ("gpt-4o-mini ~0.4s TTFT", apikeyhealth.com, "The Latency
# Trade-off: gpt-4o-mini vs. gpt-4o", 2026); output at ~59 tokens/s, i.e. ~0.017 s per token
# (a measured 59.0 t/s average for gpt-4o-mini over 500-token answers, community.openai.com,
# "Inference speed of different models", 2025).
_SMALL_MODEL_LATENCY: dict[str, Any] = {"ttft_s": 0.4, "per_token_s": 0.017}


def _azure_deployment(tpm: int) -> SimulatorProfile:
    """An Azure OpenAI standard deployment given ``tpm`` tokens per minute of quota.

    Sources: the RPM limit follows the TPM at 6 RPM per 1,000 TPM ("For older chat models, 1
    unit of capacity is 1,000 TPM and 6 RPM", learn.microsoft.com, "Azure OpenAI 429: token
    and request rate limits explained"; "RPM = (TPM x 6) / 1000", Microsoft Q&A 2265464).
    Rates are enforced over short windows, "typically 1 or 10 seconds" (Microsoft Q&A
    1336515), and the TPM charge is an estimate that includes ``max_tokens`` (same page as
    the ratio), which the simulator does too; the burst is the 10-second window. Azure
    publishes no connection cap, so none is set.
    """
    return SimulatorProfile(
        name=f"azure-{tpm // 1000}k",
        rpm=tpm * 6 // 1000,
        tpm=tpm,
        burst_s=10.0,
        **_SMALL_MODEL_LATENCY,
    )


def _openai_tier(name: str, rpm: int, tpm: int) -> SimulatorProfile:
    """An OpenAI usage tier's published limits for gpt-4o-mini (no connection cap published)."""
    return SimulatorProfile(name=name, rpm=rpm, tpm=tpm, **_SMALL_MODEL_LATENCY)


PROFILES: dict[str, SimulatorProfile] = {
    "tier1": _TIER1,
    "tier2": SimulatorProfile(
        name="tier2", max_connections=1_000, rpm=10_000, tpm=10_000_000, ttft_s=0.4
    ),
    "flaky": _TIER1.model_copy(
        update={
            "name": "flaky",
            "fault_500": 0.03,
            "fault_503": 0.03,
            "fault_reset": 0.02,
            "fault_stall": 0.01,
        }
    ),
    "unlimited": SimulatorProfile(name="unlimited", ttft_s=0.0, per_token_s=0.0),
    # 240,000 TPM: the regional default quota Microsoft quotes for a GPT-3.5-Turbo deployment
    # ("if you have a quota of 240,000 TPM for GPT-3.5 Turbo in East US", Microsoft Q&A
    # 1689036; the same figure in learn.microsoft.com's 429 explainer), so 1,440 RPM.
    "azure-240k": _azure_deployment(240_000),
    # OpenAI usage tiers for gpt-4o-mini: tier 1 (after $5 spent) 500 RPM / 200,000 TPM;
    # tier 2 ($50 spent, 7+ days) 5,000 RPM / 2,000,000 TPM (ai-buzz.com, "OpenAI Rate
    # Limits Explained - Complete Guide by Tier"; rate-limits.apis.io gives tier 1 at 500
    # RPM with mini models at ~10x gpt-4o's 30,000 TPM).
    "openai-tier1-mini": _openai_tier("openai-tier1-mini", 500, 200_000),
    "openai-tier2-mini": _openai_tier("openai-tier2-mini", 5_000, 2_000_000),
    # One quota several worker processes share (issue 14): a connection cap that a burst
    # overshoots, and an RPM limit that binds in steady state (600 RPM = 10 calls/s; 24
    # connections hold ~17 calls/s of ~1.4 s each; 300,000 TPM holds ~20 calls/s of ~250).
    "shared-quota": SimulatorProfile(
        name="shared-quota", max_connections=24, rpm=600, tpm=300_000, **_SMALL_MODEL_LATENCY
    ),
}
"""Built-in profiles. ``tier1``/``tier2`` resemble a low and a high paid tier of a hosted
provider; ``flaky`` is ``tier1`` with a few percent of each fault; ``unlimited`` answers at
once with no limits, for unit tests. ``azure-240k``, ``openai-tier1-mini`` and
``openai-tier2-mini`` mirror published quotas (sources next to each), with a small model's
published latency: these are what a team like the reference one actually gets.
``shared-quota`` is a small quota with a connection cap, for several workers sharing it."""


def get_profile(profile: str | SimulatorProfile = "tier1", **overrides: Any) -> SimulatorProfile:
    """A built-in profile by name (or a given one) with fields replaced by ``overrides``."""
    if isinstance(profile, SimulatorProfile):
        base = profile
    else:
        try:
            base = PROFILES[profile]
        except KeyError:
            names = ", ".join(sorted(PROFILES))
            raise InputError(f"unknown simulator profile {profile!r} (known: {names})") from None
    if not overrides:
        return base
    try:
        return SimulatorProfile.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        raise InputError(f"bad simulator override: {exc}") from exc
