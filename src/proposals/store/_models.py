"""What the store returns: hits with their citations, documents, the index's model."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["Citation", "DocumentInfo", "IndexInfo", "SearchHit", "SearchMode"]

SearchMode = Literal["hybrid", "vector", "text"]


class Citation(BaseModel):
    """Where a chunk comes from; enough for a reader to find the passage. The one citation
    model: search hits carry it, and a run's themes, findings and proposals cite with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: int
    document_id: int | None = None
    """``None`` only in results stored before citations carried it."""
    title: str
    path: str
    page: int | None = None
    section: str | None = None
    country: str | None = None
    """Country of the cited document; ``None`` for documents that apply everywhere."""
    doc_type: str = "other"

    def label(self) -> str:
        """``title (path, p. 3, § Section)`` for reports."""
        where = [self.path]
        if self.page is not None:
            where.append(f"p. {self.page}")
        if self.section:
            where.append(f"§ {self.section}")
        return f"{self.title} ({', '.join(where)})"

    def describe(self) -> str:
        """One line for people: ``[#12] Title — section, p. 3 (AR, official) path``."""
        where = ", ".join(x for x in (self.section, f"p. {self.page}" if self.page else None) if x)
        scope = f"{self.country or 'global'}, {self.doc_type}"
        return (
            f"[#{self.chunk_id}] {self.title}{' — ' + where if where else ''} ({scope}) {self.path}"
        )


class SearchHit(BaseModel):
    """One retrieved chunk: its text, score (higher is better) and citation."""

    model_config = ConfigDict(frozen=True)

    chunk_id: int
    text: str
    score: float
    citation: Citation


class DocumentInfo(BaseModel):
    """A stored document and how many chunks it has."""

    id: int
    path: str
    title: str
    doc_type: str
    country: str | None
    content_hash: str
    embedding_model: str
    chunks: int
    tokens: int
    updated_at: datetime


class IndexInfo(BaseModel):
    """The embedding model the index was built with."""

    embedding_model: str
    embedding_dim: int
