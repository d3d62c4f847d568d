"""The interface every embedding backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. One instance per model; safe to share between tasks.

    ``name`` is recorded with the index and compared on every write and search: vectors of two
    models are never mixed. ``embed`` returns a float32 array of shape ``(len(texts), dim)``,
    rows in input order, and batches internally; it never blocks the event loop.
    """

    @property
    def name(self) -> str:
        """Model identity stored in the index (e.g. ``sentence-transformers/all-MiniLM-L6-v2``)."""
        ...

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (float32, one row per text, in order)."""
        ...
