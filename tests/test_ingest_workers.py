"""Large PDF/DOCX/HTML files parsed in worker processes: the same chunks as in-process, the
same per-file failures, and a run that survives its workers being killed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from _embedder import HashEmbedder
from proposals.db import Database
from proposals.ingest import IngestFailure, ParsedFile, ingest, parse_file
from proposals.ingest._workers import POOL_MIN_BYTES, WorkerParser
from proposals.store import Store
from test_loaders import SEC_10Q

OPTIONS = (None, None, 50.0)


def _big_html(path: Path, topic: str) -> Path:
    """An HTML page over the pooling threshold, with sections and a word only it contains."""
    parts = [f"<html><head><title>{topic} handbook</title></head><body><h1>{topic}</h1>"]
    n = 0
    while sum(map(len, parts)) < POOL_MIN_BYTES + 10_000:
        parts.append(f"<h2>Part {n}</h2>")
        parts.extend(
            f"<p>{topic} rule {n}.{i}: deposits of {n * 100 + i} pesos settle the same day, "
            f"and the ledger keeps entry {topic.lower()}-{n}-{i}.</p>"
            for i in range(20)
        )
        n += 1
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _same(pooled: ParsedFile | IngestFailure | None, path: Path) -> None:
    assert isinstance(pooled, ParsedFile), pooled
    here = parse_file(path, max_mb=50)
    assert (pooled.key, pooled.digest, pooled.meta, pooled.file_meta) == (
        here.key,
        here.digest,
        here.meta,
        here.file_meta,
    )
    assert list(pooled.chunks()) == list(here.chunks())


def _workers() -> list[psutil.Process]:
    """This process's live parser workers (spawned by multiprocessing)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any(
                "spawn_main" in part for part in p.cmdline()
            ):
                found.append(p)
        except psutil.Error:  # it ended meanwhile
            pass
    return found


async def test_worker_parsing_gives_the_same_chunks_as_in_process(tmp_path: Path) -> None:
    files = [_big_html(tmp_path / f"{t}.html", t) for t in ("Alpha", "Beta", "Gamma")]
    if SEC_10Q.is_dir():  # real filings when the shared data is beside the checkout
        files += [SEC_10Q / "2023 Q2 AAPL.pdf", SEC_10Q / "2022 Q3 INTC.pdf"]
    small = tmp_path / "small.html"
    small.write_text("<html><body><p>Short page.</p></body></html>", encoding="utf-8")
    order = [small, *files]
    parser = WorkerParser([(p.resolve(), None) for p in order], OPTIONS)
    assert parser.enabled
    try:
        assert await parser.parse(small.resolve()) is None  # below the threshold: in-process
        for path in files:
            _same(await parser.parse(path.resolve()), path)
        assert _workers()
    finally:
        await parser.close(finished=True)
    assert not _workers()


async def test_one_large_file_starts_no_workers(tmp_path: Path) -> None:
    path = _big_html(tmp_path / "only.html", "Only").resolve()
    parser = WorkerParser([(path, None)], OPTIONS)
    assert not parser.enabled
    assert await parser.parse(path) is None
    assert not _workers()


async def test_killed_workers_leave_the_rest_to_the_ingesting_process(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "corpus"
    files = [_big_html(root / f"page{i}.html", f"Page{i}").resolve() for i in range(5)]
    task = asyncio.create_task(ingest([root], database=database, embedder=HashEmbedder()))
    # Kill a worker as soon as it exists: it is still starting (importing the package), so
    # the file it was sent is in progress and must be parsed by the ingesting process.
    deadline = time.monotonic() + 120
    while not (workers := _workers()):
        assert not task.done(), "the ingest ended without starting parser workers"
        assert time.monotonic() < deadline, "no parser worker started within 120 s"
        await asyncio.sleep(0.01)
    workers[0].send_signal(signal.SIGKILL)
    report = await task
    assert report.ok and sorted(report.added) == [p.as_posix() for p in files]
    assert "a parser process died (exit code -9)" in caplog.text
    async with database.pool.connection() as conn:
        for path in files:
            cur = await conn.execute(
                "SELECT c.ord, c.text, c.section, c.token_count FROM chunks c "
                "JOIN documents d ON d.id = c.document_id WHERE d.path = %s ORDER BY c.ord",
                (path.as_posix(),),
            )
            stored = [tuple(r) for r in await cur.fetchall()]
            here = parse_file(path)
            assert stored == [(c.ord, c.text, c.section, c.token_count) for c in here.chunks()]
    assert not _workers()


_LEAVER = """
import asyncio, multiprocessing, os, signal, sys
from pathlib import Path
from proposals.ingest._workers import WorkerParser

KEPT = []

async def main():
    files = [Path(p) for p in sys.argv[1:]]
    parser = WorkerParser([(f, None) for f in files], (None, None, 50.0))
    KEPT.append(parser)  # its pipes stay open until the interpreter's exit
    await parser.parse(files[0])
    workers = [p for p in multiprocessing.active_children() if p.name.startswith("proposals-parse")]
    print(" ".join(str(p.pid) for p in workers), flush=True)
    os.kill(workers[0].pid, signal.SIGKILL)
    # Leaves without close(): the interpreter's exit must still end the other worker.

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_interpreter_exit_ends_killed_and_unclosed_workers(tmp_path: Path) -> None:
    files = [_big_html(tmp_path / f"f{i}.html", f"Topic{i}").resolve() for i in range(4)]
    script = tmp_path / "leave.py"
    script.write_text(_LEAVER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang at exit fails here, loudly
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    _, alive = psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=30)
    assert not alive, f"parser workers outlived their process: {alive}"


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


async def test_pooled_run_reports_a_damaged_pdf_by_name(database: Database, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for topic in ("Alpha", "Beta"):
        _big_html(root / "AR" / "official" / f"{topic.lower()}.html", topic)
    broken = root / "AR" / "official" / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * (POOL_MIN_BYTES // 256) + b"\n%%EOF\n")
    (root / "AR" / "official" / "note.md").write_text("# Note\n\nA small note.\n")
    report = await ingest([root], database=database, embedder=HashEmbedder())
    assert sorted(Path(p).name for p in report.added) == ["alpha.html", "beta.html", "note.md"]
    assert [(Path(f.path).name, "damaged PDF" in f.reason) for f in report.failed] == [
        ("broken.pdf", True)
    ]
    hits = await Store(database).search("ledger entry beta-3-7", 3, mode="text")
    assert hits and hits[0].citation.title == "Beta handbook"
    assert not _workers()


@pytest.mark.skipif(
    not SEC_10Q.is_dir(), reason="../shared/data/sec-10q is not beside the checkout"
)
async def test_filings_ingested_through_workers_match_in_process_chunks(
    database: Database, tmp_path: Path
) -> None:
    names = ["2023 Q2 AAPL.pdf", "2022 Q3 AAPL.pdf"]
    folder = tmp_path / "sec"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(SEC_10Q / name)
    report = await ingest([folder], database=database, embedder=HashEmbedder())
    assert report.ok and len(report.added) == 2
    async with database.pool.connection() as conn:
        for name in names:
            cur = await conn.execute(
                "SELECT c.ord, c.text, c.section, c.page, c.token_count FROM chunks c "
                "JOIN documents d ON d.id = c.document_id WHERE d.path = %s ORDER BY c.ord",
                ((SEC_10Q / name).resolve().as_posix(),),
            )
            stored = [tuple(r) for r in await cur.fetchall()]
            here = parse_file(SEC_10Q / name)
            assert stored == [
                (c.ord, c.text, c.section, c.page, c.token_count) for c in here.chunks()
            ]


async def test_cancelled_ingest_ends_its_workers(database: Database, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for i in range(6):
        _big_html(root / f"page{i}.html", f"Page{i}")
    first = asyncio.Event()
    task = asyncio.create_task(
        ingest([root], database=database, embedder=HashEmbedder(), progress=lambda _: first.set())
    )
    await asyncio.wait_for(first.wait(), timeout=120)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 30
    while _workers():
        assert time.monotonic() < deadline, "parser workers outlived the cancelled ingest"
        await asyncio.sleep(0.1)
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT d.path, count(c.id) FROM documents d LEFT JOIN chunks c"
            " ON c.document_id = d.id GROUP BY d.path"
        )
        stored = dict(await cur.fetchall())
    assert len(stored) < 6  # cancelled part-way: what is stored was committed whole
    assert stored == {path: len(list(parse_file(path).chunks())) for path in stored}
