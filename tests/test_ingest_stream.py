"""Large files stream through split -> embed -> write in slices (issue 8, item 3): the embedder
never sees more than a slice at a time, progress is reported between slices, a file is stored
whole or not at all (a failure or a cancellation part-way leaves the previous version), and an
unchanged file is skipped without embedding. The public per-stage functions are used alone."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from _embedder import HashEmbedder
from proposals.config import DEFAULT_TENANT
from proposals.db import Database
from proposals.errors import IngestError, ProviderError
from proposals.ingest import (
    DocumentSink,
    IngestProgress,
    StoredDocument,
    embedding_text,
    ingest,
    parse_file,
    prepare_file,
)
from proposals.store import Store

_WORDS = [
    *("savings", "households", "rural", "agents", "credit", "deposits", "branch", "mobile"),
    *("wallet", "interest", "regulation", "ceiling", "fee", "account", "remittance"),
    *("cooperative", "insurance", "microloan"),
]
SLICE = 256  # the pipeline's slice (proposals.ingest._pipeline._SLICE)


def _text(paragraphs: int, seed: int = 0) -> str:
    out = []
    for p in range(paragraphs):
        words = [_WORDS[(p * 7 + i * 3 + seed) % len(_WORDS)] for i in range(60)]
        out.append(f"Paragraph {p} of seed {seed}. " + " ".join(words).capitalize() + ".")
    return "Field notes\n\n" + "\n\n".join(out) + "\n"


class RecordingEmbedder(HashEmbedder):
    """Hash vectors; records each call's size and can fail on a given call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.fail_on_call = fail_on_call

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.sizes.append(len(texts))
        if self.fail_on_call == len(self.sizes):
            raise ProviderError("embedding service down (test)")
        return await super().embed(texts)


async def _stored(database: Database) -> dict[str, StoredDocument]:
    return await DocumentSink(database, HashEmbedder().name, tenant=DEFAULT_TENANT).open(0)


async def _chunk_count(database: Database, path: Path) -> int | None:
    docs = {d.path: d for d in await Store(database).list_documents()}
    doc = docs.get(path.as_posix())  # tmp_path is already absolute and resolved
    return None if doc is None else doc.chunks


async def test_a_large_file_streams_in_slices_with_progress(
    database: Database, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_text(_text(700), "utf-8")
    embedder = RecordingEmbedder()
    events: list[IngestProgress] = []
    report = await ingest(
        [big],
        database=database,
        embedder=embedder,
        chunk_tokens=48,
        chunk_overlap=0,
        progress=events.append,
    )
    assert report.ok and report.added == [big.as_posix()]
    total = report.chunks_written
    assert total > 2 * SLICE
    assert max(embedder.sizes) <= SLICE, "the embedder saw more than a slice at once"
    assert sum(embedder.sizes) == total
    storing = [e.chunks for e in events if e.status == "storing"]
    assert storing == [SLICE * (i + 1) for i in range(len(storing))]
    assert len(storing) == (total - 1) // SLICE
    assert events[-1].status == "added" and events[-1].chunks == total
    assert await _chunk_count(database, big) == total

    # Unchanged: skipped without embedding anything.
    again = RecordingEmbedder()
    report = await ingest([big], database=database, embedder=again, chunk_tokens=48)
    assert report.unchanged == [big.as_posix()] and again.sizes == []


async def test_a_file_failing_part_way_keeps_its_previous_version(
    database: Database, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_text(_text(400), "utf-8")
    first = await ingest([big], database=database, embedder=HashEmbedder(), chunk_tokens=48)
    stored = first.chunks_written
    assert stored > SLICE
    [old] = (await _stored(database)).values()

    big.write_text(_text(700, seed=1), "utf-8")  # changed: to be re-embedded
    failing = RecordingEmbedder(fail_on_call=2)  # the first slice is written, then it fails
    report = await ingest([big], database=database, embedder=failing, chunk_tokens=48)
    [failure] = report.failed
    assert "embedding failed" in failure.reason and not report.updated
    assert await _chunk_count(database, big) == stored, "the old version must stay whole"
    [doc] = (await _stored(database)).values()
    assert doc == old, "the failed update must not have touched the document's row"


async def test_cancelling_mid_file_stores_nothing_of_it(database: Database, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text(_text(700), "utf-8")
    sliced = asyncio.Event()

    def on_progress(event: IngestProgress) -> None:
        if event.status == "storing":
            sliced.set()

    task = asyncio.create_task(
        ingest(
            [big],
            database=database,
            embedder=HashEmbedder(),
            chunk_tokens=48,
            progress=on_progress,
        )
    )
    await asyncio.wait_for(sliced.wait(), timeout=300)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _chunk_count(database, big) is None
    # The pool got its connection back in a usable state: a new ingest stores the file.
    report = await ingest([big], database=database, embedder=HashEmbedder(), chunk_tokens=48)
    assert report.added and await _chunk_count(database, big) == report.chunks_written


async def test_stages_used_alone(database: Database, tmp_path: Path) -> None:
    note = tmp_path / "AR" / "official" / "note.md"
    note.parent.mkdir(parents=True)
    note.write_text("---\ntitle: Ceiling rules\n---\n# Rules\n\n" + _text(30), "utf-8")
    embedder = HashEmbedder()
    options = {"embedding_model": embedder.name, "chunk_tokens": 48, "overlap": 0, "max_mb": 50}

    sink = DocumentSink(database, embedder.name, tenant=DEFAULT_TENANT)
    stored = await sink.open(1)
    item = prepare_file(note, tmp_path, stored=stored.get(note.as_posix()), **options)
    assert (item.meta.title, item.meta.country, item.meta.doc_type) == (
        "Ceiling rules",
        "AR",
        "official",
    )
    assert item.chunks and pickle.loads(pickle.dumps(item)) == item  # plain data, for Ray
    parsed = parse_file(note, tmp_path)  # the streamed form: same chunks, readable again
    assert list(parsed.chunks(48, 0)) == item.chunks == list(parsed.chunks(48, 0))
    vectors = await embedder.embed([embedding_text(item.meta.title, c) for c in item.chunks])
    await sink.write(item, vectors)
    assert sink.report.added == [item.key] and sink.report.chunks_written == len(item.chunks)
    assert await _chunk_count(database, note) == len(item.chunks)

    again = DocumentSink(database, embedder.name, tenant=DEFAULT_TENANT)
    stored = await again.open(1)
    unchanged = prepare_file(note, tmp_path, stored=stored[item.key], **options)
    assert unchanged.chunks is None and await again.settle(unchanged)
    assert again.report.unchanged == [item.key]


def test_a_streamed_file_changed_while_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "moving.txt"
    path.write_text(_text(50), "utf-8")
    parsed = parse_file(path)
    path.write_text(_text(50, seed=3), "utf-8")
    with pytest.raises(IngestError, match="changed while it was being read"):
        list(parsed.chunks(48, 0))


def test_cli_prints_a_line_per_slice_when_not_a_terminal(tmp_path: Path, database_url: str) -> None:
    big = tmp_path / "big.txt"
    big.write_text(_text(300), "utf-8")
    env = {
        **os.environ,
        "PROPOSALS_DATABASE_URL": database_url,
        "PROPOSALS_CHUNK_TOKENS": "32",
        "PROPOSALS_CHUNK_OVERLAP": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "proposals", "--data-dir", str(tmp_path / "d"), "ingest", str(big)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("ingest [")]
    assert lines[0] == f"ingest [1/1] storing {big}: {SLICE} chunks so far"
    assert lines[1] == f"ingest [1/1] storing {big}: {2 * SLICE} chunks so far"
    assert lines[-1].startswith(f"ingest [1/1] added {big}, ")
