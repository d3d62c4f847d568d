"""The OpenAI embeddings API (or any OpenAI-compatible ``/v1/embeddings``), batched."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, ProviderError

if TYPE_CHECKING:
    from ..llm import LLMGateway

__all__ = ["OpenAIEmbedder", "require_endpoint"]

_KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def require_endpoint(api_key: str | None, base_url: str | None) -> None:
    """Raise :class:`ConfigError` when neither a key nor a base URL names an endpoint."""
    if not api_key and not base_url:
        raise ConfigError(
            "the OpenAI embedder needs OPENAI_API_KEY (or PROPOSALS_OPENAI_BASE_URL for "
            "an OpenAI-compatible server); or set PROPOSALS_EMBEDDING_PROVIDER=local"
        )


class OpenAIEmbedder:
    """An :class:`~proposals.embeddings.Embedder` calling ``POST /embeddings``.

    ``dimensions`` asks a ``text-embedding-3`` model for shorter vectors (it becomes part of
    :attr:`name`, so indexes of different sizes are never mixed). For a model not in the
    built-in table, pass ``dimensions`` or the size is learnt from the first response.
    ``client`` lets the caller share an existing ``openai.AsyncOpenAI``. With ``gateway``
    every request goes through that :class:`~proposals.llm.LLMGateway` instead (its client,
    retries, concurrency limit and rate budgets, shared with other processes when it holds a
    shared budget): embedding then takes its share of the endpoint's quota like any LLM call.
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
        gateway: LLMGateway | None = None,
    ) -> None:
        if batch_size < 1 or batch_size > 2048:
            raise ConfigError("embedding batch size must be between 1 and 2048")
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._dim: int | None = dimensions or _KNOWN_DIMS.get(model)
        self._gateway = gateway
        if client is None and gateway is None:
            require_endpoint(api_key, base_url)
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
        size = self._batch_size
        batches = [items[start : start + size] for start in range(0, len(items), size)]
        if self._gateway is None or len(batches) == 1:
            rows = [await self._embed_batch(batch) for batch in batches]
        else:
            rows = await self._embed_together(batches)
        return np.concatenate(rows, axis=0)

    async def _embed_together(self, batches: list[list[str]]) -> list[np.ndarray]:
        """Every batch at once: the gateway bounds the requests in flight (to this process's
        share of the endpoint's limit). The first failure cancels the rest and is raised."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._embed_batch(batch)) for batch in batches]
        except BaseExceptionGroup as failed:
            errors = [e for e in failed.exceptions if isinstance(e, ProviderError)]
            if len(errors) == len(failed.exceptions):
                raise errors[0] from None
            raise
        return [task.result() for task in tasks]

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        if self._gateway is not None:
            answer = await self._gateway.embed(
                batch, model=self._model, dimensions=self._dimensions
            )
            return self._checked(np.asarray(answer.vectors, dtype=np.float32))
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
        return self._checked(np.asarray([item.embedding for item in data], dtype=np.float32))

    def _checked(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix`` after checking (or learning) the vector size."""
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise ProviderError(
                f"embedding endpoint returned {matrix.shape[1]}-dimensional vectors; "
                f"expected {self._dim}"
            )
        return matrix

    async def aclose(self) -> None:
        """Close the HTTP client (a gateway is closed by whoever opened it)."""
        if self._client is not None:
            await self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.name!r})"
