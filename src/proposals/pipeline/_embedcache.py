"""An embedder wrapper that embeds many queries in one batch and remembers them.

The lens items' evidence searches repeat the same query text per country; embedding each
distinct query once, in one batch, takes most of the CPU time out of planning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embeddings import Embedder

__all__ = ["PrefetchingEmbedder"]


class PrefetchingEmbedder:
    """Implements :class:`~proposals.embeddings.Embedder` over ``inner`` with a memory."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._vectors: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    async def prefetch(self, texts: Sequence[str]) -> None:
        """Embed every text not yet known, in one call."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            vectors = await self._inner.embed(missing)
            self._vectors.update(zip(missing, vectors, strict=True))

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        await self.prefetch(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32, copy=False)
