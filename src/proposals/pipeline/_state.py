"""The graph's state and the payloads its ``Send`` targets receive, as TypedDicts.

Everything here is plain JSON-like data so the PostgreSQL checkpointer can store it; the
element dicts (evidence, themes, findings...) keep their documented keys but stay ``dict``
so that a checkpoint written by an older version still loads.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

__all__ = ["LensInput", "PipelineState", "SynthesisInput"]


class PipelineState(TypedDict, total=False):
    """Checkpointed state: plain JSON-like data only."""

    evidence: list[dict[str, Any]]
    """Chunks retrieved for node A: ``{id, text, citation}``."""
    themes: list[dict[str, Any]]
    lens_batches: list[dict[str, Any]]
    """Packed lens batches (chunk ids only)."""
    pairs: list[dict[str, Any]]
    """The (country, profile) pairs to synthesise, in request order."""
    findings: Annotated[list[dict[str, Any]], operator.add]
    proposals: Annotated[list[dict[str, Any]], operator.add]
    failed: Annotated[list[dict[str, Any]], operator.add]
    warnings: Annotated[list[str], operator.add]
    stops: Annotated[list[str], operator.add]
    """Why the run stopped early (budget); empty when it did not."""
    lens_done: Annotated[list[str], operator.add]
    """The lens of every batch done (one entry per batch)."""
    planned: Annotated[list[str], operator.add]
    """The lens of every batch planned by the pipelined path (one entry per batch)."""
    synth_done: Annotated[list[str], operator.add]


class LensInput(TypedDict):
    """What one lens node receives through ``Send``: one packed batch and the themes."""

    batch: dict[str, Any]
    """``{id, lens, items, tokens}``; items carry chunk ids, not texts."""
    themes: list[dict[str, Any]]


class SynthesisInput(TypedDict):
    """What one synthesis node receives through ``Send``: one (country, profile) pair."""

    country: str
    profile: dict[str, Any]
    themes: list[dict[str, Any]]
    findings: list[dict[str, Any]]
