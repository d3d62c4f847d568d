"""The OpenAI embeddings API (or any OpenAI-compatible ``/v1/embeddings``), batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ProviderError

__all__ = ["OpenAIEmbedder"]

_KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """An :class:`~proposals.embeddings.Embedder` calling ``POST /embeddings``.

    ``dimensions`` asks a ``text-embedding-3`` model for shorter vectors (it becomes part of
    :attr:`name`, so indexes of different sizes are never mixed). For a model not in the
    built-in table, pass ``dimensions`` or the size is learnt from the first response.
    ``client`` lets the caller share an existing ``openai.AsyncOpenAI``.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        batch_size: int = 256,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        client: Any = None,
    ) -> None:
        if batch_size < 1 or batch_size > 2048:
            raise ConfigError("embedding batch size must be between 1 and 2048")
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._dim: int | None = dimensions or _KNOWN_DIMS.get(model)
        if client is None:
            if not api_key and not base_url:
                raise ConfigError(
                    "the OpenAI embedder needs OPENAI_API_KEY (or PROPOSALS_OPENAI_BASE_URL for "
                    "an OpenAI-compatible server); or set PROPOSALS_EMBEDDING_PROVIDER=local"
                )
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=api_key or "not-needed",
                base_url=base_url,
                timeout=timeout_s,
                max_retries=max_retries,
            )
        self._client = client

    @property
    def name(self) -> str:
        base = f"openai/{self._model}"
        return f"{base}@{self._dimensions}" if self._dimensions else base

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise ConfigError(
                f"the vector size of embedding model {self._model!r} is unknown until the first "
                "call; pass dimensions=... to OpenAIEmbedder"
            )
        return self._dim

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = [t if t.strip() else " " for t in texts]  # the API rejects empty strings
        if not items:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        rows: list[np.ndarray] = []
        for start in range(0, len(items), self._batch_size):
            rows.append(await self._embed_batch(items[start : start + self._batch_size]))
        return np.concatenate(rows, axis=0)

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        import openai

        extra: dict[str, Any] = {}
        if self._dimensions:
            extra["dimensions"] = self._dimensions
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=batch, encoding_format="float", **extra
            )
        except openai.APIStatusError as exc:
            raise ProviderError(
                f"embedding request to {self._model!r} failed with HTTP {exc.status_code}: "
                f"{exc.message}"
            ) from exc
        except openai.APIError as exc:  # connection errors, timeouts, bad responses
            raise ProviderError(f"embedding request to {self._model!r} failed: {exc}") from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise ProviderError(
                f"embedding endpoint returned {len(data)} vectors for {len(batch)} texts"
            )
        matrix = np.asarray([item.embedding for item in data], dtype=np.float32)
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise ProviderError(
                f"embedding endpoint returned {matrix.shape[1]}-dimensional vectors; "
                f"expected {self._dim}"
            )
        return matrix

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.name!r})"
