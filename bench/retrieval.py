"""Retrieval benchmark: ingest throughput on the sample corpus, and filtered hybrid search
latency at 100k chunks. Writes bench/results/retrieval.json.

100k chunks are not embedded one by one (MiniLM on 2 CPU cores would take most of an hour).
Synthetic chunks are made of 4 sentences drawn from the sample corpus; every distinct sentence
is embedded with the real model and a chunk's vector is the normalised mean of its sentences'
vectors plus small noise. How close that is to the real embedding is measured on a sample and
reported in ``notes``. Full text runs on the real synthetic texts.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from proposals.config import Settings
from proposals.db import Database
from proposals.embeddings import LocalEmbedder
from proposals.ingest import ingest
from proposals.store import Store, ensure_index
from proposals.tokens import count_tokens

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "examples" / "corpus"
RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"

N_CHUNKS = int(os.environ.get("BENCH_RETRIEVAL_CHUNKS", "100000"))
CHUNKS_PER_DOC = 10
N_QUERIES = 200
COUNTRIES = ["AR", "BR", "MX", "CL", "CO", None]
COUNTRY_WEIGHTS = [16, 16, 16, 16, 16, 20]
DOC_TYPES = ["official", "technical_report", "product_description", "other"]
_SENT = re.compile(r"(?<=[.!?])\s+")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _ingest_throughput(settings: Settings, embedder: LocalEmbedder) -> dict:
    async with await Database.open(settings) as db:
        report = await ingest([CORPUS], database=db, embedder=embedder)
        store = Store(db)
        hits = await store.get_chunks(range(1, report.chunks_written + 1))
    return {
        "documents": len(report.added),
        "failed": len(report.failed),
        "chunks": report.chunks_written,
        "tokens": report.tokens_written,
        "seconds": round(report.seconds, 2),
        "chunks_per_s": round(report.chunks_written / report.seconds, 1),
        "tokens_per_s": round(report.tokens_written / report.seconds, 1),
        "embed_seconds": round(report.embed_seconds, 2),
        "embed_share": round(report.embed_seconds / report.seconds, 3),
        "chunk_texts": [h.text for h in hits],
    }


async def _build_synthetic(
    db: Database, embedder: LocalEmbedder, texts: list[str], rng: random.Random
) -> dict:
    sentences = sorted(
        {s.strip() for t in texts for s in _SENT.split(" ".join(t.split())) if len(s.split()) >= 5}
    )
    t0 = time.perf_counter()
    sent_vecs = await embedder.embed(sentences)
    sentence_embed_s = time.perf_counter() - t0
    nprng = np.random.default_rng(7)
    n_docs = N_CHUNKS // CHUNKS_PER_DOC

    # A few hundred distinct sentences reused across 100k chunks would make every phrase match
    # hundreds of chunks; real corpora are far more diverse. So a quarter of the words are
    # swapped for pseudo-words drawn from a Zipf-distributed 30k-word vocabulary.
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "qui", "la", "dem", "ba", "ro"]
    vocab = ["".join(rng.choice(syllables) for _ in range(3)) + str(i % 97) for i in range(30_000)]
    zipf = np.minimum(nprng.zipf(1.3, 10_000_000), len(vocab)) - 1
    zipf_pos = 0

    def perturb(sentence: str) -> str:
        nonlocal zipf_pos
        words = sentence.split()
        for w in range(len(words)):
            if rng.random() < 0.25:
                words[w] = vocab[int(zipf[zipf_pos % len(zipf)])]
                zipf_pos += 1
        return " ".join(words)

    def make_chunk() -> tuple[str, np.ndarray]:
        picks = [rng.randrange(len(sentences)) for _ in range(4)]
        text = " ".join(perturb(sentences[i]) for i in picks)
        vec = sent_vecs[picks].mean(axis=0) + nprng.normal(0, 0.01, sent_vecs.shape[1])
        return text, (vec / np.linalg.norm(vec)).astype(np.float32)

    # How faithful is the approximation? Embed a sample for real and compare.
    sample = [make_chunk() for _ in range(200)]
    real = await embedder.embed([t for t, _ in sample])
    fidelity = float(np.mean([float(real[i] @ v) for i, (_, v) in enumerate(sample)]))

    t0 = time.perf_counter()
    async with db.pool.connection() as conn:
        async with conn.transaction():
            await ensure_index(conn, embedder.name, embedder.dim)
            await conn.execute("DROP INDEX chunks_embedding_hnsw")  # bulk load, then build
        async with conn.cursor() as cur:
            async with cur.copy(
                "COPY documents (id, path, title, content_hash, doc_type, "
                "country, embedding_model) FROM STDIN"
            ) as copy:
                doc_meta = []
                for d in range(1, n_docs + 1):
                    cc = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
                    dt = rng.choice(DOC_TYPES)
                    doc_meta.append((cc, dt))
                    await copy.write_row(
                        (
                            d,
                            f"/synthetic/{d}.md",
                            f"Synthetic document {d}",
                            f"{d:064x}",
                            dt,
                            cc,
                            embedder.name,
                        )
                    )
            async with cur.copy(
                "COPY chunks (document_id, ord, text, section, token_count, "
                "country, doc_type, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int4", "text", "text", "int4", "text", "text", "vector"])
                for d in range(1, n_docs + 1):
                    cc, dt = doc_meta[d - 1]
                    for o in range(CHUNKS_PER_DOC):
                        text, vec = make_chunk()
                        await copy.write_row(
                            (d, o, text, f"Section {o}", len(text) // 4, cc, dt, vec)
                        )
        await conn.commit()
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute(
            "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        await conn.execute("SELECT setval('documents_id_seq', %s)", (n_docs,))
        await conn.commit()
        hnsw_s = time.perf_counter() - t0
        await conn.execute("ANALYZE chunks")
        await conn.execute("ANALYZE documents")
        await conn.commit()
    return {
        "chunks": N_CHUNKS,
        "documents": n_docs,
        "distinct_sentences_embedded": len(sentences),
        "sentence_embed_seconds": round(sentence_embed_s, 1),
        "approximation_mean_cosine_to_real_embedding": round(fidelity, 3),
        "copy_seconds": round(load_s, 1),
        "hnsw_build_seconds": round(hnsw_s, 1),
        "sentences": sentences,
    }


async def _latency(
    db: Database, embedder: LocalEmbedder, sentences: list[str], rng: random.Random
) -> dict:
    store = Store(db, embedder)
    queries = []
    for i in range(N_QUERIES + 20):
        words = rng.choice(sentences).rstrip(".").split()
        start = rng.randrange(max(1, len(words) - 6))
        text = " ".join(words[start : start + rng.choice([3, 5, 7])])
        country = rng.choice(["AR", "BR", "MX", "CL", "CO"])
        types = [rng.choice(DOC_TYPES)] if i % 2 else None
        queries.append((text, country, types))
    embed_ms, total_ms, db_ms = [], [], []
    by_filter: dict[str, list[float]] = {"country": [], "country+type": []}
    for n, (text, country, types) in enumerate(queries):
        t0 = time.perf_counter()
        await embedder.embed([text])
        t1 = time.perf_counter()
        hits = await store.search(text, 10, country=country, doc_types=types)
        t2 = time.perf_counter()
        assert all(h.citation.country in (country, None) for h in hits)
        if n < 20:
            continue  # warm-up
        embed_ms.append((t1 - t0) * 1000)
        total_ms.append((t2 - t1) * 1000)
        db_ms.append(max(0.0, (t2 - t1) - (t1 - t0)) * 1000)
        by_filter["country+type" if types else "country"].append((t2 - t1) * 1000)

    def summary(values: list[float]) -> dict:
        return {
            "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(_pct(values, 95), 2),
            "max_ms": round(max(values), 2),
            "n": len(values),
        }

    return {
        "hybrid_top10_filtered_end_to_end": summary(total_ms),
        "query_embedding_alone": summary(embed_ms),
        "hybrid_top10_filtered_minus_embedding": summary(db_ms),
        "by_filter_end_to_end": {k: summary(v) for k, v in by_filter.items()},
    }


async def _run() -> dict:
    rng = random.Random(42)
    load_start = round(os.getloadavg()[0], 2)  # other work on the box skews latencies
    embedder = LocalEmbedder()
    t0 = time.perf_counter()
    await embedder.load()
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", db_pool_max=4)
        print("ingesting the sample corpus…", flush=True)
        throughput = await _ingest_throughput(settings, embedder)
        texts = throughput.pop("chunk_texts")
        async with await Database.open(settings) as db:
            await Store(db).reset_index()
            print(f"building {N_CHUNKS} synthetic chunks…", flush=True)
            synthetic = await _build_synthetic(db, embedder, texts, rng)
            sentences = synthetic.pop("sentences")
            print("measuring search latency…", flush=True)
            latency = await _latency(db, embedder, sentences, rng)
    p95 = latency["hybrid_top10_filtered_end_to_end"]["p95_ms"]
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_start_and_end": [load_start, round(os.getloadavg()[0], 2)],
        },
        "embedding_model": embedder.name,
        "model_load_seconds": round(load_s, 2),
        "ingest_sample_corpus": throughput,
        "synthetic_index": synthetic,
        "search_latency_100k": latency,
        "goal": {"p95_ms_below": 30, "met": p95 < 30},
        "notes": [
            "Ingest throughput: examples/corpus (46 fictional documents) into a fresh embedded "
            "PostgreSQL, all-MiniLM-L6-v2 on CPU, model preloaded (load time reported apart); "
            "embed_share is the part of wall time spent waiting on the embedder.",
            "100k chunks: 4 corpus sentences per chunk with 25% of words swapped for pseudo-words "
            "from a Zipf-distributed 30k vocabulary (lexical diversity for full text); vector = "
            "normalised mean of the real embeddings of the unperturbed sentences + N(0, 0.01) "
            "noise; approximation_mean_cosine_to_real_embedding compares it with the real "
            "embedding of 200 such (perturbed) chunk texts. Countries: 16% each of AR/BR/MX/CL/CO, 20% none; 4 doc types "
            "uniform; 10 chunks per document; HNSW m=16, ef_construction=64, built after COPY.",
            f"Queries: {N_QUERIES} measured after 20 warm-up, 3-7 word spans of corpus "
            "sentences, each filtered by one country (that country + global = ~36% of chunks); "
            "half also by one doc type (~9%). end_to_end includes embedding the query "
            "with MiniLM; minus_embedding subtracts a separately timed embedding of the same "
            "query. Sequential queries, one client.",
            "Where the time goes (profiled separately on the same data): query embedding "
            "~14 ms p50 (MiniLM, 1 thread), filtered HNSW ~7 ms p50 with a tail when ef_search "
            "is raised for selective filters, full text ~10-35 ms p50 because the synthetic "
            "chunks reuse a few hundred template sentences (distinct_sentences_embedded), so a "
            "3-7 word query still matches "
            "thousands of chunks; both halves run concurrently on 2 cores shared with the "
            "database and, during this run, with other processes (see load average).",
            "pgvector here is 0.6.2 (no iterative index scan): ef_search is raised in proportion "
            "to the filter's selectivity (from cached counts), small filtered sets use an exact "
            "scan, and a short HNSW answer is redone exactly.",
        ],
    }


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    count_tokens("warm")  # load the tokenizer outside the timings
    result = asyncio.run(_run())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {k: result[k] for k in ("ingest_sample_corpus", "search_latency_100k", "goal")},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
