"""Ingest on a real local Ray cluster (loopback, 2 CPUs): the same documents, chunks and vectors
as a local ingest, the same idempotence by content hash, broken files named, progress per file;
with the local embedder and with the OpenAI one (against a loopback /v1/embeddings server)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from _embedding_server import EmbeddingServer, remote_settings
from conftest import CORPUS
from proposals.cli import main
from proposals.config import Settings
from proposals.db import Database
from proposals.embeddings import embedder_from_settings
from proposals.ingest import IngestProgress, RayOptions, ingest, ingest_on_ray
from proposals.simulator import SimulatorProcess

pytestmark = pytest.mark.slow


async def _stored(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], Any]:
    """Documents and chunks as comparable rows (ids left out), and the vectors in that order."""
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT path, title, content_hash, doc_type, country, metadata, embedding_model"
            " FROM documents ORDER BY path"
        )
        docs = await cur.fetchall()
        cur = await conn.execute(
            "SELECT d.path, c.ord, c.text, c.section, c.page, c.token_count, c.country,"
            " c.doc_type, c.tenant, c.embedding FROM chunks c"
            " JOIN documents d ON d.id = c.document_id ORDER BY d.path, c.ord"
        )
        rows = await cur.fetchall()
    chunks = [r[:-1] for r in rows]
    vectors = np.vstack([np.asarray(r[-1].to_numpy(), dtype=np.float32) for r in rows])
    return docs, chunks, vectors


def _template_settings(pg_server: Any, corpus_template: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "tpl", database_url=pg_server.get_uri(corpus_template))


async def test_ray_ingest_equals_local_ingest_and_is_idempotent(
    ray_cluster: Any,
    settings: Settings,
    database: Database,
    pg_server: Any,
    corpus_template: str,
    tmp_path: Path,
) -> None:
    events: list[IngestProgress] = []
    report = await ingest_on_ray(
        [CORPUS],
        settings=settings,
        database=database,
        options=RayOptions(actors=1, batch_size=32),
        progress=events.append,
    )
    assert report.ok, report.failed
    assert len(report.added) == 46 and report.chunks_written > 300
    assert [e.done for e in events] == list(range(1, 47))
    assert {e.total for e in events} == {46} and {e.status for e in events} == {"added"}
    assert sum(e.chunks for e in events) == report.chunks_written

    async with await Database.open(_template_settings(pg_server, corpus_template, tmp_path)) as tpl:
        local_docs, local_chunks, local_vectors = await _stored(tpl)
    docs, chunks, vectors = await _stored(database)
    assert docs == local_docs
    assert chunks == local_chunks
    # Batches differ between the two runs (bfloat16 on CPUs that have it): equal to its precision.
    np.testing.assert_allclose(vectors, local_vectors, atol=1e-2)
    cosine = np.sum(vectors * local_vectors, axis=1)
    assert float(cosine.min()) > 0.999

    again = await ingest_on_ray(
        [CORPUS], settings=settings, database=database, options=RayOptions(actors=2)
    )
    assert len(again.unchanged) == 46 and again.chunks_written == 0 and again.ok


def _mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    shutil.copytree(CORPUS / "AR", root / "AR")
    (root / "AR" / "official" / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a pdf")
    (root / "AR" / "official" / "blank.md").write_text("---\ntitle: nothing\n---\n\n")
    return root


async def test_broken_files_are_named_and_local_and_ray_agree(
    ray_cluster: Any, settings: Settings, database: Database, embedder: Any, tmp_path: Path
) -> None:
    root = _mixed_folder(tmp_path)
    local = await ingest([root], database=database, embedder=embedder)
    failed = {f.path: f.reason for f in local.failed}
    assert set(failed) == {
        (root / "AR/official/broken.pdf").as_posix(),
        (root / "AR/official/blank.md").as_posix(),
    }
    # Change one file: the Ray run must update it, skip the rest, and fail the same two files.
    changed = root / "AR" / "official" / "extra.md"
    changed.write_text("# Extra\n\nA new paragraph about deposit insurance for savers.\n")
    on_ray = await ingest_on_ray([root], settings=settings, database=database)
    assert {f.path: f.reason for f in on_ray.failed} == failed
    assert on_ray.added == [changed.as_posix()]
    assert sorted(on_ray.unchanged) == sorted(local.added)


async def test_ray_ingest_with_the_openai_embedder(
    ray_cluster: Any, settings: Settings, database: Database, tmp_path: Path
) -> None:
    root = _mixed_folder(tmp_path)
    with EmbeddingServer() as server:
        remote = remote_settings(
            settings, server.base_url, "test-embedding", embedding_batch_size=8
        )
        report = await ingest_on_ray(
            [root], settings=remote, database=database, options=RayOptions(batch_size=16)
        )
        assert len(report.failed) == 2 and report.chunks_written > 0
        docs, chunks, vectors = await _stored(database)
        assert {d[-1] for d in docs} == {"openai/test-embedding"}
        served = len(server.requests)
        assert served >= report.chunks_written / 8

        async with database.pool.connection() as conn:
            await conn.execute("DELETE FROM documents")
        local = await ingest([root], database=database, embedder=embedder_from_settings(remote))
    assert local.chunks_written == report.chunks_written
    local_docs, local_chunks, local_vectors = await _stored(database)
    assert (local_docs, local_chunks) == (docs, chunks)
    np.testing.assert_allclose(vectors, local_vectors, atol=1e-6)


async def test_ray_actors_embed_within_one_shared_budget(
    ray_cluster: Any, settings: Settings, database: Database, tmp_path: Path
) -> None:
    """Two actors embedding through the simulator with the shared budget on: each holds a lease
    of its own, the grants never add up to more than the endpoint's limit (6), the simulator
    (connection cap 8, 60 RPM at time scale 0.25: 4 requests/s, binding) never sees more
    connections than that nor more than a few refusals of rate, and nothing fails."""
    root = _mixed_folder(tmp_path)
    limit, cap = 6, 8
    polls: list[list[tuple[Any, ...]]] = []

    async def watch() -> None:
        while True:
            async with database.pool.connection() as conn:
                cur = await conn.execute("SELECT holder, slots, in_flight FROM provider_shares")
                polls.append(await cur.fetchall())
            await asyncio.sleep(0.05)

    with SimulatorProcess("shared-quota", time_scale=0.25, max_connections=cap, rpm=60) as sim:
        remote = remote_settings(
            settings,
            sim.base_url,
            "sim-embedding",
            chunk_tokens=64,  # many small chunks: ~100 requests
            chunk_overlap=8,
            embedding_batch_size=1,  # 16 requests per batch of 16 chunks, sent at once
            shared_budget=True,
            shared_budget_lease_s=3.0,
            llm_concurrency_start=2,
            llm_concurrency_max=limit,
        )
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(watch())
            report = await ingest_on_ray(
                [root],
                settings=remote,
                database=database,
                options=RayOptions(actors=2, batch_size=16),
            )
            watcher.cancel()
        stats = sim.stats()
    async with database.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM provider_shares")
        print(f"leases right after the ingest: {(await cur.fetchone())[0]}")
    assert sorted(Path(f.path).name for f in report.failed) == ["blank.md", "broken.pdf"]
    assert report.chunks_written > 0 and len(report.added) > 0
    holders = {row[0] for rows in polls for row in rows}
    assert len(holders) >= 2, polls[-5:]  # one lease per actor
    assert max(sum(row[1] for row in rows) for rows in polls) <= limit
    assert max(sum(row[2] for row in rows) for rows in polls) <= limit
    assert stats["embeddings"] >= report.chunks_written
    # The actors are gone with the ingest: none of their leases is live any more (deleted as
    # the pool shut down, or expired).
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        async with database.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM provider_shares WHERE expires_at > now()"
            )
            live = (await cur.fetchone())[0]
        if live == 0:
            break
        assert asyncio.get_running_loop().time() < deadline, f"{live} leases still live"
        await asyncio.sleep(0.25)
    assert stats["peak_connections"] <= cap and stats["rejects"]["connection_refused"] == 0
    # Each actor paces at its share of the rate: a few 429s at most (measured: 2 of 82), where
    # two actors each spending the whole rate would have about half their requests refused.
    assert stats["rejects"]["rate_limit_rpm"] < stats["embeddings"] / 10, stats
    print(f"simulator: {stats}")


def test_cli_ingest_on_ray_names_broken_files_and_shows_progress(
    ray_cluster: Any,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = _mixed_folder(tmp_path)
    monkeypatch.setenv("PROPOSALS_DATABASE_URL", database_url)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "ingest", str(root), "--ray", "auto", "--batch-size", "16"]) == 1
    captured = capsys.readouterr()
    total = len(list(root.rglob("*.*")))
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("ingest [")]
    assert len(lines) == total and lines[-1].startswith(f"ingest [{total}/{total}]")
    assert f"FAILED {(root / 'AR/official/broken.pdf').as_posix()}: " in captured.err
    assert "failed 2" in captured.out
    # Contradictory options are refused in one line, before any work.
    assert main([*data, "ingest", str(root), "--ray", "auto", "--server", "http://x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray and --server" in err[0]


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ("127.0.0.1:{port}", "connection refused"),
        ("ray://127.0.0.1:{port}", "connection refused"),
        ("head-node", "is not HOST:PORT"),
    ],
)
def test_cli_unreachable_ray_address_fails_at_once_in_one_line(
    form: str, said: str, tmp_path: Path, database_url: str
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = form.format(port=port)
    env = {**os.environ, "PROPOSALS_DATABASE_URL": database_url, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "proposals", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.run(
        [*command, "ingest", str(CORPUS / "AR"), "--ray", address],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and address in lines[0] and said in lines[0], lines
    with psycopg.connect(database_url) as conn:
        table = conn.execute("SELECT to_regclass('documents')").fetchone()
        stored = conn.execute("SELECT count(*) FROM documents").fetchone() if table[0] else (0,)
    assert stored == (0,)
