"""Request and result models of the proposal pipeline, and the schemas the LLM answers in.

The request and result models are the public contract of :func:`proposals.generate`. The
``*Out`` models are what each node asks the LLM to return; they cite evidence with
``citations: list[int]`` (chunk ids shown in the prompt as ``[#id] text``) and carry no
constraints a model could break, so normalisation happens in code, not in validation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError
from ..llm import UsageTotals
from ..store import Citation

__all__ = [
    "LENSES",
    "NODES",
    "Citation",
    "FailedItem",
    "Finding",
    "FindingOut",
    "Lens",
    "Profile",
    "Proposal",
    "ProposalOut",
    "ProposalRequest",
    "ProposalResult",
    "RunOptions",
    "RunStatus",
    "Theme",
    "ThemeOut",
    "UsageTotals",
    "load_profiles",
]

Lens = Literal["market_fit", "regulation", "feasibility", "positioning"]
LENSES: tuple[Lens, ...] = ("market_fit", "regulation", "feasibility", "positioning")
"""The four lenses (nodes B-E), in the order they are reported."""
NODES: tuple[str, ...] = ("retrieve", "analyze", "plan", *LENSES, "synthesize")
"""Every node of the graph that reports progress, in flow order."""
RunStatus = Literal[
    "queued",
    "running",
    "completed",
    "completed_with_errors",
    "stopped_budget",
    "cancelled",
    "failed",
]
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# request


class Profile(_Frozen):
    """A customer profile within a country."""

    name: str = Field(min_length=1, max_length=200)
    """Short name, e.g. ``young urban savers``."""
    description: str = ""
    """Who they are and what they need; shown to every prompt about this profile."""


class RunOptions(_Frozen):
    """Tuning of one run. Unset window/reserve/model fall back to the settings."""

    themes: int = Field(default=9, ge=1, le=50)
    """Opportunity themes node A keeps after merging (the reference system used 9)."""
    proposals_per_pair: int = Field(default=5, ge=1, le=50)
    """Ranked proposals kept per (country, profile)."""
    models: dict[str, str] = Field(default_factory=dict)
    """Model (or Azure deployment) per node name; missing nodes use the settings' model."""
    context_window: int | None = Field(default=None, ge=512)
    """Tokens per request, prompt and answer together; default: the settings' window."""
    output_reserve: int | None = Field(default=None, ge=64)
    """Tokens kept free for the answer of a call; default: the settings' reserve."""
    retrieval_k: int = Field(default=6, ge=1, le=100)
    """Chunks retrieved per country and lens for node A."""
    evidence_k: int = Field(default=4, ge=1, le=50)
    """Chunks each lens item draws as its own evidence."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Token budget (prompt + completion) of the whole run; reaching it stops the run."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Cost budget of the whole run in US dollars; reaching it stops the run."""

    @field_validator("models")
    @classmethod
    def _known_nodes(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(NODES))
        if unknown:
            raise ValueError(f"unknown node(s) {unknown}; known: {list(NODES)}")
        return value


class ProposalRequest(_Frozen):
    """What to generate: a brief, countries, profiles (shared or per country), variables."""

    brief: str = Field(min_length=3)
    """The product area, e.g. ``savings products for households``."""
    countries: list[str] = Field(min_length=1)
    """ISO 3166-1 alpha-2 codes; case-insensitive on input, stored upper-case, unique."""
    profiles: list[Profile] | dict[str, list[Profile]]
    """The same profiles for every country, or a mapping country -> its profiles."""
    variables: dict[str, str] = Field(default_factory=dict)
    """Free-form variables (channel, budget, risk appetite...) passed to every prompt."""
    options: RunOptions = Field(default_factory=RunOptions)

    @field_validator("countries", mode="before")
    @classmethod
    def _split_countries(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in re.split(r"[,\s]+", value) if part]
        return value

    @field_validator("countries")
    @classmethod
    def _iso_codes(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for raw in value:
            code = raw.strip().upper()
            if not _COUNTRY.match(code):
                raise ValueError(f"{raw!r} is not an ISO 3166-1 alpha-2 country code")
            if code not in out:
                out.append(code)
        return out

    @field_validator("variables")
    @classmethod
    def _clean_variables(cls, value: dict[str, str]) -> dict[str, str]:
        return {str(k).strip(): str(v).strip() for k, v in value.items() if str(k).strip()}

    @model_validator(mode="after")
    def _profiles_cover_countries(self) -> ProposalRequest:
        if isinstance(self.profiles, dict):
            upper = {k.strip().upper(): v for k, v in self.profiles.items()}
            object.__setattr__(self, "profiles", upper)
            missing = [c for c in self.countries if not upper.get(c)]
            if missing:
                raise ValueError(f"no profiles given for {', '.join(missing)}")
        elif not self.profiles:
            raise ValueError("at least one profile is required")
        for country in self.countries:
            names = [p.name for p in self.profiles_for(country)]
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate profile names for {country}: {names}")
        return self

    def profiles_for(self, country: str) -> list[Profile]:
        """The profiles that apply in ``country``."""
        if isinstance(self.profiles, dict):
            return list(self.profiles.get(country, []))
        return list(self.profiles)

    def pairs(self) -> list[tuple[str, Profile]]:
        """Every (country, profile) pair, countries in request order."""
        return [(c, p) for c in self.countries for p in self.profiles_for(c)]


def load_profiles(path: str | Path) -> list[Profile] | dict[str, list[Profile]]:
    """Read profiles from a YAML or JSON file.

    Accepted shapes: a list of ``{name, description}``; ``{profiles: [...]}``; or a mapping
    of country code to such a list (per-country profiles). Errors are :class:`InputError`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read profiles file {p}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(
            f"profiles file {p} is not valid {p.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from exc
    if isinstance(data, dict) and set(data) == {"profiles"}:
        data = data["profiles"]
    try:
        if isinstance(data, list):
            return [Profile.model_validate(item) for item in data]
        if isinstance(data, dict):
            return {
                str(country): [Profile.model_validate(item) for item in items]
                for country, items in data.items()
            }
    except ValidationError as exc:
        raise InputError(f"profiles file {p}: {exc}") from exc
    raise InputError(
        f"profiles file {p} must hold a list of {{name, description}} or a mapping of "
        "country code to such lists"
    )


# --------------------------------------------------------------------------------------------
# result


class Theme(_Frozen):
    """An opportunity theme from node A."""

    id: str
    """Stable id ``T1``..``TN`` in rank order."""
    title: str
    description: str
    citations: list[Citation] = Field(default_factory=list)


class Finding(_Frozen):
    """One statement a lens made about one (theme, country, profile) item."""

    lens: Lens
    theme_id: str
    country: str
    profile: str
    text: str
    citations: list[Citation] = Field(default_factory=list)


class Proposal(_Frozen):
    """A product proposal for one (country, profile), grounded in cited documents."""

    rank: int
    """1 = best within its (country, profile)."""
    title: str
    country: str
    profile: str
    summary: str
    value_proposition: str
    key_features: list[str]
    regulatory_notes: str
    feasibility: str
    pricing_and_positioning: str
    risks: list[str]
    score: float
    """0-100, higher is better."""
    score_reason: str
    citations: list[Citation]


class FailedItem(_Frozen):
    """Work that still failed after retries; recorded, never silently dropped."""

    node: str
    item: str
    """Human key of the item, e.g. ``regulation T3 AR/young savers``."""
    error: str
    error_type: str


class ProposalResult(BaseModel):
    """Everything a run produced, including what failed and why it stopped."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    status: RunStatus
    request: ProposalRequest
    simulated: bool
    """True when the text was written by the offline simulator, not a real model."""
    provider: str
    """Where the calls went, e.g. ``simulator tier1 at http://127.0.0.1:PORT/v1``."""
    themes: list[Theme] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    proposals: list[Proposal] = Field(default_factory=list)
    failed: list[FailedItem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    usage: UsageTotals = Field(default_factory=UsageTotals)
    stop_reason: str | None = None
    elapsed_s: float = 0.0

    def proposals_for(self, country: str, profile: str) -> list[Proposal]:
        """Proposals of one pair in rank order."""
        return sorted(
            (p for p in self.proposals if p.country == country and p.profile == profile),
            key=lambda p: p.rank,
        )


# --------------------------------------------------------------------------------------------
# what the LLM returns


class ThemeOut(BaseModel):
    """One opportunity theme as the model states it."""

    title: str
    description: str
    citations: list[int] = Field(default_factory=list)


class FindingOut(BaseModel):
    """One finding of a lens."""

    statement: str
    citations: list[int] = Field(default_factory=list)


class ProposalOut(BaseModel):
    """One proposal as the model states it."""

    title: str
    summary: str
    value_proposition: str
    key_features: list[str] = Field(default_factory=list)
    regulatory_notes: str = ""
    feasibility: str = ""
    pricing_and_positioning: str = ""
    risks: list[str] = Field(default_factory=list)
    score: float = Field(default=0, json_schema_extra={"minimum": 0, "maximum": 100})
    score_reason: str = ""
    citations: list[int] = Field(default_factory=list)
