"""Embedding backends behind one interface.

``Embedder`` is the protocol; ``LocalEmbedder`` runs sentence-transformers on the CPU (the
default, offline) and ``OpenAIEmbedder`` calls an OpenAI-compatible ``/embeddings`` endpoint.
``embedder_from_settings`` builds the one the settings name; ``open_embedder`` does too, for
the length of an ``async with``, with the OpenAI embedder's requests in the shared provider
budget when that is on. ``CachingEmbedder`` wraps any of
them and embeds each distinct text once (query texts repeat across searches).
``cores_busy_elsewhere`` tells the local model how many cores the caller's other work uses.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import ConfigError
from ._base import Embedder
from ._cache import CachingEmbedder
from ._local import LocalEmbedder, cores_busy_elsewhere
from ._open import embedding_gateway_config, open_embedder
from ._openai import OpenAIEmbedder

if TYPE_CHECKING:
    from ..llm import LLMGateway

__all__ = [
    "CachingEmbedder",
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "cores_busy_elsewhere",
    "embedder_from_settings",
    "embedding_gateway_config",
    "open_embedder",
]

_LOCAL_DEFAULT = "sentence-transformers/all-MiniLM-L6-v2"
_SHARED_LOCAL: dict[tuple[str, int, int | None], LocalEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def embedder_from_settings(settings: Settings, *, gateway: LLMGateway | None = None) -> Embedder:
    """The embedder named by ``settings.embedding_provider`` and ``settings.embedding_model``.

    With the ``openai`` provider and the model left at its local default, OpenAI's
    ``text-embedding-3-small`` is used; with ``gateway`` its requests go through that gateway
    (see :func:`open_embedder`), else through a client of its own.
    """
    if settings.embedding_provider == "local":
        # One model per process: loading it costs seconds and ~100 MB, and it is stateless.
        key = (settings.embedding_model, settings.embedding_batch_size, settings.embedding_threads)
        with _SHARED_LOCK:
            shared = _SHARED_LOCAL.get(key)
            if shared is None:
                shared = LocalEmbedder(
                    settings.embedding_model,
                    batch_size=settings.embedding_batch_size,
                    threads=settings.embedding_threads,
                )
                _SHARED_LOCAL[key] = shared
        return shared
    if settings.embedding_provider == "openai":
        model = settings.embedding_model
        if model == _LOCAL_DEFAULT:
            model = "text-embedding-3-small"
        return OpenAIEmbedder(
            model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            batch_size=settings.embedding_batch_size,
            timeout_s=settings.llm_timeout_s,
            gateway=gateway,
        )
    raise ConfigError(f"unknown embedding provider {settings.embedding_provider!r}")
