"""The ingest pipeline against the real embedded PostgreSQL, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _embedder import HashEmbedder, local_embedder
from proposals.cli import main
from proposals.db import Database
from proposals.errors import EmbeddingModelMismatch, InputError
from proposals.ingest import IngestProgress, ingest
from proposals.store import Store

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "corpus"


def _corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for rel, text in {
        "AR/official/rule.md": "---\ntitle: AR rule\n---\n# Rule\n\nDeposits up to 5000 pesos.\n",
        "BR/products/cofre.txt": "Cofre\n=====\n\nA savings box paying 9.75 percent a year.\n",
        "global/other/glossary.md": "# Glossary\n\nSweep: a nightly transfer into savings.\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


async def _chunk_ids(database: Database, key: str) -> list[int]:
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.path = %s ORDER BY c.ord",
            (key,),
        )
        return [r[0] for r in await cur.fetchall()]


async def test_ingest_is_idempotent_and_replaces_changed_files(
    database: Database, tmp_path: Path
) -> None:
    root = _corpus(tmp_path)
    embedder = HashEmbedder()
    events: list[IngestProgress] = []
    first = await ingest([root], database=database, embedder=embedder, progress=events.append)
    assert len(first.added) == 3 and first.ok and first.chunks_written == 3
    assert [e.done for e in events] == [1, 2, 3] and events[-1].total == 3

    calls = embedder.calls
    again = await ingest([root], database=database, embedder=embedder)
    assert len(again.unchanged) == 3 and not again.added and not again.updated
    assert embedder.calls == calls  # nothing re-embedded

    rule = root / "AR/official/rule.md"
    old_ids = await _chunk_ids(database, rule.resolve().as_posix())
    rule.write_text(
        "---\ntitle: AR rule v2\n---\n# Rule\n\nDeposits up to 9000 pesos.\n\n## Fees\n\nNo fee.\n",
        encoding="utf-8",
    )
    changed = await ingest([root], database=database, embedder=embedder)
    assert changed.updated == [rule.resolve().as_posix()] and len(changed.unchanged) == 2
    new_ids = await _chunk_ids(database, rule.resolve().as_posix())
    assert len(new_ids) == 2 and not set(new_ids) & set(old_ids)
    docs = {d.path: d for d in await Store(database).list_documents()}
    assert docs[rule.resolve().as_posix()].title == "AR rule v2"
    assert docs[rule.resolve().as_posix()].chunks == 2
    assert docs[(root / "BR/products/cofre.txt").resolve().as_posix()].country == "BR"
    assert docs[(root / "global/other/glossary.md").resolve().as_posix()].country is None


async def test_flags_relabel_without_reembedding(database: Database, tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    embedder = HashEmbedder()
    await ingest([root / "BR"], database=database, embedder=embedder)
    calls = embedder.calls
    report = await ingest(
        [root / "BR"],
        database=database,
        embedder=embedder,
        country="CL",
        doc_type="technical_report",
    )
    assert len(report.relabelled) == 1 and embedder.calls == calls
    hits = await Store(database, embedder).search("savings box", country="CL", mode="text")
    assert hits and hits[0].citation.country == "CL"
    assert hits[0].citation.doc_type == "technical_report"
    with pytest.raises(InputError, match="ISO 3166-1"):
        await ingest([root], database=database, embedder=embedder, country="XX")


async def test_prune_removes_deleted_sources(database: Database, tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    embedder = HashEmbedder()
    await ingest([root], database=database, embedder=embedder)
    gone = root / "BR/products/cofre.txt"
    gone.unlink()
    kept = await ingest([root], database=database, embedder=embedder)
    assert not kept.removed and len(await Store(database).list_documents()) == 3
    pruned = await ingest([root], database=database, embedder=embedder, prune=True)
    assert pruned.removed == [gone.resolve().as_posix()]
    assert {d.path for d in await Store(database).list_documents()} == {
        (root / "AR/official/rule.md").resolve().as_posix(),
        (root / "global/other/glossary.md").resolve().as_posix(),
    }


async def test_bad_files_are_reported_and_others_go_on(database: Database, tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    (root / "AR/official/empty.txt").write_bytes(b"")
    (root / "AR/official/junk.txt").write_bytes(bytes(range(256)) * 10)
    (root / "AR/official/cut.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<<")
    # Header and end marker in place, nothing readable between: PDFium and pypdf both refuse.
    (root / "AR/official/broken.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) + b"\n%%EOF\n")
    (root / "AR/official/picture.png").write_bytes(b"\x89PNG")
    pdf = EXAMPLES / "AR/technical_report/savings-pilot-evaluation.pdf"
    (root / "AR/technical_report").mkdir()
    (root / "AR/technical_report" / pdf.name).write_bytes(pdf.read_bytes())
    report = await ingest(
        [root, tmp_path / "missing.md"], database=database, embedder=HashEmbedder()
    )
    assert len(report.added) == 4 and not report.ok
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert set(reasons) == {"empty.txt", "junk.txt", "cut.pdf", "broken.pdf", "missing.md"}
    assert "empty" in reasons["empty.txt"] and "binary" in reasons["junk.txt"]
    assert "truncated" in reasons["cut.pdf"] and "no such file" in reasons["missing.md"]
    assert "damaged PDF" in reasons["broken.pdf"]
    assert [Path(i.path).name for i in report.ignored] == ["picture.png"]
    hits = await Store(database).search("Operation Qbr-Harvest", 3, mode="text")
    assert hits and hits[0].citation.page == 3


async def test_model_mismatch_is_refused_until_reset(database: Database, tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    await ingest([root / "AR"], database=database, embedder=HashEmbedder("test/one", 16))
    with pytest.raises(
        EmbeddingModelMismatch,
        match=r"holds vectors of embedding model 'test/one'"
        r".*--reset-index",
    ):
        await ingest([root / "BR"], database=database, embedder=HashEmbedder("test/two", 24))
    with pytest.raises(EmbeddingModelMismatch, match="test/one"):
        await Store(database, HashEmbedder("test/two", 24)).search("deposits")
    report = await ingest(
        [root], database=database, embedder=HashEmbedder("test/two", 24), reset_index=True
    )
    assert len(report.added) == 3
    info = await Store(database).index_info()
    assert info is not None and (info.embedding_model, info.embedding_dim) == ("test/two", 24)


async def test_local_model_end_to_end(database: Database, tmp_path: Path) -> None:
    root = _corpus(tmp_path)
    embedder = local_embedder()
    report = await ingest([root], database=database, embedder=embedder)
    assert report.ok and report.embed_seconds > 0
    hits = await Store(database, embedder).search("nightly transfer to a savings account", k=1)
    assert hits[0].citation.title == "Glossary"


def test_cli_ingest_search_docs(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = _corpus(tmp_path)
    (root / "AR/official/empty.md").write_text("", encoding="utf-8")
    monkeypatch.setenv("PROPOSALS_DATABASE_URL", database_url)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "ingest", str(root), "--json"]) == 1  # one file failed
    report = json.loads(capsys.readouterr().out)
    assert len(report["added"]) == 3 and report["failed"][0]["reason"] == "empty file"
    (root / "AR/official/empty.md").unlink()
    assert main([*data, "ingest", str(root), "--prune"]) == 0
    assert "unchanged 3" in capsys.readouterr().out
    assert main([*data, "search", "savings box percent", "--country", "BR", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "cofre.txt" in out and "(BR, product_description)" in out
    assert "AR rule" not in out
    assert main([*data, "search", "deposits", "--json", "--type", "official"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["citation"]["doc_type"] == "official" for h in hits)
    assert main([*data, "docs", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing["documents"]) == 3
    assert listing["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert main([*data, "ingest", str(root), "--country", "Narnia"]) == 2
