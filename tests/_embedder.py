"""Embedders shared by the ingest/store/embedding tests: the real local model, loaded once per
test session, and a tiny deterministic hashing embedder (another "model" for mismatch tests)."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

import numpy as np

from proposals.embeddings import LocalEmbedder

_WORD = re.compile(r"\w+")


@functools.cache
def local_embedder() -> LocalEmbedder:
    """One LocalEmbedder (all-MiniLM-L6-v2) for the whole session; the model loads once."""
    return LocalEmbedder()


def hash_vector(text: str, dim: int) -> list[float]:
    """Bag of hashed words, L2-normalised: texts sharing words get similar vectors."""
    vec = np.zeros(dim, dtype=np.float32)
    for word in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norm = float(np.linalg.norm(vec))
    if norm == 0:
        vec[0] = 1.0
        norm = 1.0
    return (vec / norm).tolist()


class HashEmbedder:
    """Deterministic, instant; a different model name from the local one."""

    def __init__(self, name: str = "test/hash-embedder", dim: int = 32) -> None:
        self._name = name
        self._dim = dim
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.asarray([hash_vector(t, self._dim) for t in texts], dtype=np.float32).reshape(
            len(texts), self._dim
        )
