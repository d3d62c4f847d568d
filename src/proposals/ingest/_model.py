"""Plain data passed between loaders, splitter and pipeline, and the ingest report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Block:
    """One paragraph-like piece of a loaded document, with where it sits."""

    text: str
    section: str | None = None
    page: int | None = None
    heading: bool = False
    """True for a heading line itself (it opens ``section``)."""


@dataclass(slots=True)
class LoadedDocument:
    """What a loader extracts from one file, before metadata resolution and splitting."""

    title: str | None
    blocks: list[Block]
    metadata: dict[str, Any] = field(default_factory=dict)
    """Front matter or top-level keys found in the file (may hold country, doc_type)."""


@dataclass(slots=True, frozen=True)
class Chunk:
    """A piece of a document sized for embedding and for an LLM prompt."""

    ord: int
    text: str
    section: str | None
    page: int | None
    token_count: int


@dataclass(slots=True, frozen=True)
class IngestFailure:
    """A file that could not be ingested, and why. The other files went on."""

    path: str
    reason: str


@dataclass(slots=True)
class IngestReport:
    """What one call of :func:`proposals.ingest.ingest` did."""

    added: list[str] = field(default_factory=list)
    """Files ingested for the first time."""
    updated: list[str] = field(default_factory=list)
    """Files whose content changed: their chunks were replaced."""
    relabelled: list[str] = field(default_factory=list)
    """Files with the same content but new title/country/doc_type (no re-embedding)."""
    unchanged: list[str] = field(default_factory=list)
    """Files skipped because their content hash and metadata were already stored."""
    removed: list[str] = field(default_factory=list)
    """Documents whose source file no longer exists (``prune=True``)."""
    failed: list[IngestFailure] = field(default_factory=list)
    """Files that could not be ingested, with a reason."""
    ignored: list[IngestFailure] = field(default_factory=list)
    """Files met while walking a folder that are not of a supported type, or hidden."""
    chunks_written: int = 0
    tokens_written: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    """Wall time spent waiting on the embedder (part of ``seconds``)."""

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``proposals ingest --json``)."""
        data = asdict(self)
        data["ok"] = self.ok
        return data
