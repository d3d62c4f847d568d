"""One conformance suite for every Embedder; the OpenAI one talks real HTTP to a tiny
``/v1/embeddings`` server on loopback (vectors: hashed bag of words, rows shuffled so the client
must reorder by ``index``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Sequence

import numpy as np
import pytest

from _embedder import local_embedder
from _embedding_server import DIM, EmbeddingServer
from proposals.config import Settings
from proposals.embeddings import (
    CachingEmbedder,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    cores_busy_elsewhere,
    embedder_from_settings,
)
from proposals.errors import ConfigError, ProviderError
from proposals.llm import GatewayConfig, LLMGateway


@pytest.fixture(scope="module")
def emb_server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer() as server:
        yield server


@pytest.fixture(params=["local", "openai", "openai-gateway"])
async def embedder(
    request: pytest.FixtureRequest, emb_server: EmbeddingServer
) -> AsyncIterator[Embedder]:
    if request.param == "local":
        yield local_embedder()
        return
    emb_server.fail_with = None
    if request.param == "openai-gateway":  # requests through a gateway's budgets and retries
        config = GatewayConfig(base_url=emb_server.base_url, api_key="sk-test", max_retries=0)
        async with LLMGateway(config) as gateway:
            yield OpenAIEmbedder("test-embedding", batch_size=4, gateway=gateway)
        return
    client = OpenAIEmbedder(
        "test-embedding",
        dimensions=None,
        base_url=emb_server.base_url,
        api_key="sk-test",
        batch_size=4,
        max_retries=0,
    )
    yield client
    await client.aclose()


# --- the conformance suite ---------------------------------------------------------------------


async def test_shape_dtype_and_order(embedder: Embedder) -> None:
    texts = [f"text number {i} about savings" for i in range(10)]
    vectors = await embedder.embed(texts)
    assert vectors.shape == (10, embedder.dim)
    assert vectors.dtype == np.float32
    one_by_one = np.vstack([await embedder.embed([t]) for t in texts])

    # Batches of documents may run in bfloat16 where the CPU has it (a query alone does not),
    # so rows agree to bfloat16 precision, not bit for bit; each row is still its own text's.
    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    similarity = unit(vectors) @ unit(one_by_one).T
    assert float(np.diag(similarity).min()) > 0.999  # batching keeps row order
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-2)


async def test_empty_input(embedder: Embedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape[0] == 0


async def test_vectors_are_unit_length_and_deterministic(embedder: Embedder) -> None:
    a = await embedder.embed(["fixed-term deposit for household savings"])
    b = await embedder.embed(["fixed-term deposit for household savings"])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert abs(float(np.linalg.norm(a[0])) - 1.0) < 1e-3


async def test_related_texts_are_closer_than_unrelated(embedder: Embedder) -> None:
    v = await embedder.embed(
        [
            "insurance for the home against floods",
            "home insurance covering floods and storms",
            "the football match ended in a draw",
        ]
    )
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.1


async def test_name_and_dim_after_a_call(embedder: Embedder) -> None:
    vectors = await embedder.embed(["x"])
    assert embedder.name and "/" in embedder.name
    assert isinstance(embedder.dim, int) and embedder.dim == vectors.shape[1] > 0


# --- implementation specifics ------------------------------------------------------------------


async def test_openai_batches_requests(emb_server: EmbeddingServer) -> None:
    client = OpenAIEmbedder(
        "test-embedding", base_url=emb_server.base_url, api_key="k", batch_size=3, max_retries=0
    )
    emb_server.requests.clear()
    vectors = await client.embed([f"t{i}" for i in range(7)])
    await client.aclose()
    assert vectors.shape == (7, DIM)
    assert [len(r["input"]) for r in emb_server.requests] == [3, 3, 1]
    assert all(r["encoding_format"] == "float" for r in emb_server.requests)
    assert client.name == "openai/test-embedding"


async def test_openai_errors_become_provider_errors(emb_server: EmbeddingServer) -> None:
    client = OpenAIEmbedder(
        "test-embedding", base_url=emb_server.base_url, api_key="k", max_retries=0
    )
    emb_server.fail_with = 500
    try:
        with pytest.raises(ProviderError, match="HTTP 500"):
            await client.embed(["x"])
    finally:
        emb_server.fail_with = None
        await client.aclose()
    dead = OpenAIEmbedder(
        "m", base_url="http://127.0.0.1:1/v1", api_key="k", max_retries=0, timeout_s=2
    )
    with pytest.raises(ProviderError):
        await dead.embed(["x"])
    await dead.aclose()


def test_openai_dimension_is_part_of_the_name() -> None:
    e = OpenAIEmbedder("text-embedding-3-small", dimensions=256, api_key="k")
    assert (e.name, e.dim) == ("openai/text-embedding-3-small@256", 256)
    assert OpenAIEmbedder("text-embedding-3-large", api_key="k").dim == 3072


def test_embedder_from_settings(tmp_path) -> None:
    local = embedder_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalEmbedder) and local.dim == 384
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        embedder_from_settings(Settings(data_dir=tmp_path, embedding_provider="openai"))
    remote = embedder_from_settings(
        Settings(data_dir=tmp_path, embedding_provider="openai", openai_api_key="sk-x")
    )
    assert remote.name == "openai/text-embedding-3-small" and remote.dim == 1536


def test_local_embedder_is_shared_per_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from proposals.config import Settings
    from proposals.embeddings import embedder_from_settings

    a = embedder_from_settings(Settings(data_dir=tmp_path))
    b = embedder_from_settings(Settings(data_dir=tmp_path / "other"))
    c = embedder_from_settings(Settings(data_dir=tmp_path, embedding_batch_size=7))
    assert a is b
    assert c is not a


class _Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += texts
        return await self.inner.embed(texts)


async def test_caching_embedder_embeds_each_text_once(embedder: Embedder) -> None:
    counting = _Counting(embedder)
    cached = CachingEmbedder(counting, max_texts=3)
    texts = ["savings for gig workers", "crop insurance", "remittances"]
    # Asked for together and concurrently: each text is embedded once, in one batch.
    first, second = await asyncio.gather(cached.embed(texts), cached.embed(texts[::-1]))
    assert sorted(counting.texts) == sorted(texts)
    np.testing.assert_array_equal(first, second[::-1])
    np.testing.assert_array_equal(first, await counting.inner.embed(texts))
    # Over the bound, the least recently used text goes and is embedded again when asked.
    await cached.embed(texts[1:])
    await cached.embed(["a fourth text"])
    await cached.embed([texts[0]])
    assert counting.texts.count(texts[0]) == 2
    assert cached.name == embedder.name and cached.dim == embedder.dim


async def test_openai_through_a_gateway_sends_batches_at_once_under_its_limit(
    emb_server: EmbeddingServer,
) -> None:
    config = GatewayConfig(
        base_url=emb_server.base_url,
        api_key="k",
        max_retries=0,
        concurrency_min=1,
        concurrency_start=2,
        concurrency_max=2,
    )
    async with LLMGateway(config) as gateway:
        client = OpenAIEmbedder("test-embedding", batch_size=3, gateway=gateway)
        emb_server.requests.clear()
        vectors = await client.embed([f"t{i}" for i in range(7)])
        direct = OpenAIEmbedder("test-embedding", base_url=emb_server.base_url, api_key="k")
        np.testing.assert_array_equal(vectors, await direct.embed([f"t{i}" for i in range(7)]))
        await direct.aclose()
        stats = gateway.stats()
        assert sorted(len(r["input"]) for r in emb_server.requests[:3]) == [1, 3, 3]
        assert stats.http_requests == 3 and stats.peak_in_flight <= 2
        assert stats.prompt_tokens == 3  # the server charges 1 token per request
        emb_server.fail_with = 500
        try:
            with pytest.raises(ProviderError, match="server_error_500"):
                await client.embed([f"t{i}" for i in range(7)])
        finally:
            emb_server.fail_with = None


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to leave one")
async def test_cores_busy_elsewhere_lower_the_models_default_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    chosen = LocalEmbedder(threads=cores)
    default = LocalEmbedder()  # built after OMP_NUM_THREADS is cleared: default threads
    texts = [f"document number {i} about savings accounts" for i in range(12)]  # not a query

    async def threads_used(embedder: LocalEmbedder, busy: int) -> list[int]:
        seen: list[int] = []
        module = embedder._load()[0]  # the transformer inside the sentence-transformers model
        hook = module.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        try:
            with cores_busy_elsewhere(lambda: busy):  # read in the embedder's own thread
                await embedder.embed(texts)
        finally:
            hook.remove()
        return seen

    assert set(await threads_used(default, 0)) == {cores}
    assert set(await threads_used(default, 1)) == {cores - 1}
    assert set(await threads_used(default, cores + 3)) == {1}
    assert set(await threads_used(chosen, 1)) == {cores}  # a chosen count is kept
