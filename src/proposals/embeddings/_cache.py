"""An embedder that remembers: each distinct text is embedded once, in batches.

Searches repeat the same query texts (a lens item's query does not depend on the country), and
embedding them on a busy CPU is what planning spends its time on. Texts asked for while their
embedding is already under way wait for that one instead of embedding again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ._base import Embedder

__all__ = ["CachingEmbedder"]


class CachingEmbedder:
    """Implements :class:`Embedder` over ``inner``, keeping the vectors of up to ``max_texts``
    texts (least recently used dropped first)."""

    def __init__(self, inner: Embedder, *, max_texts: int = 50_000) -> None:
        self._inner = inner
        self._max = max_texts
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: dict[str, asyncio.Future[None]] = {}

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def inner(self) -> Embedder:
        """The embedder that does the work."""
        return self._inner

    async def prefetch(self, texts: Sequence[str]) -> None:
        """Embed every text not yet known (the new ones in one call of the inner embedder)."""
        wanted = list(dict.fromkeys(texts))
        missing = [t for t in wanted if t not in self._vectors and t not in self._pending]
        waits = {self._pending[t] for t in wanted if t in self._pending}
        if missing:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for text in missing:
                self._pending[text] = done
            try:
                vectors = await self._inner.embed(missing)
                for text, vector in zip(missing, vectors, strict=True):
                    self._vectors[text] = vector
                while len(self._vectors) > self._max:
                    self._vectors.popitem(last=False)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)
                done.exception()  # retrieved here; waiters re-raise it themselves
                raise
            finally:
                for text in missing:
                    self._pending.pop(text, None)
        for wait in waits:
            await asyncio.shield(wait)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        await self.prefetch(texts)
        rows = []
        for text in texts:
            vector = self._vectors.get(text)
            if vector is None:  # dropped by the size bound meanwhile: embed it again
                await self.prefetch([text])
                vector = self._vectors[text]
            self._vectors.move_to_end(text)
            rows.append(vector)
        return np.stack(rows).astype(np.float32, copy=False)
