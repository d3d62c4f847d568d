"""Retrieval evaluation: metrics on a hand-computed toy case, question files, the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from _embedder import HashEmbedder
from proposals.cli import main
from proposals.config import Settings
from proposals.db import Database
from proposals.errors import InputError
from proposals.evaluate import (
    evaluate_retrieval,
    load_questions,
    ndcg_at_k,
    parse_questions,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from proposals.ingest import ingest
from proposals.store import SearchHit, Store


def test_metrics_on_a_hand_computed_case() -> None:
    # Ranked list: miss, hit (target a), miss, hit (targets a and b), miss; three targets,
    # four relevant chunks in the corpus.
    targets = [set(), {"a"}, set(), {"a", "b"}, set()]
    relevant = [bool(t) for t in targets]
    assert recall_at_k(targets, 3, 1) == 0.0
    assert recall_at_k(targets, 3, 3) == pytest.approx(1 / 3)
    assert recall_at_k(targets, 3, 5) == pytest.approx(2 / 3)
    assert precision_at_k(relevant, 3) == pytest.approx(1 / 3)
    assert precision_at_k(relevant, 5) == pytest.approx(2 / 5)
    assert precision_at_k(relevant[:2], 5) == pytest.approx(1 / 5)  # a short list is not excused
    assert reciprocal_rank(relevant, 5) == 0.5
    assert reciprocal_rank(relevant, 1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    assert ndcg_at_k(relevant, 4, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(relevant, 1, 5) == pytest.approx(dcg / 1)  # ideal: one relevant chunk
    assert ndcg_at_k(relevant, 0, 5) == 0.0


def test_question_files_csv_json_and_mistakes(tmp_path: Path) -> None:
    sec_style = (
        "\ufeffQuestion,Source Docs,Question Type,Source Chunk Type,Answer\n"
        'How did sales change?,*AAPL*,Multi-Doc RAG,Table,"went up, a lot"\n'
    )
    path = tmp_path / "qna.csv"
    path.write_text(sec_style, encoding="utf-8")
    (q,) = load_questions(path)
    assert (q.id, q.question, q.files, q.type) == (
        "1",
        "How did sales change?",
        ("*AAPL*",),
        "Multi-Doc RAG",
    )

    data = {
        "questions": [
            {
                "id": "x",
                "question": "fees?",
                "country": "AR",
                "doc_types": ["official"],
                "relevant": {"files": ["*a.md"], "sections": ["Fees"], "chunks": [3]},
            }
        ]
    }
    (q,) = parse_questions(json.dumps(data), "json")
    assert (q.country, q.doc_types, q.files, q.sections, q.chunks) == (
        "AR",
        ("official",),
        ("*a.md",),
        ("Fees",),
        (3,),
    )
    with pytest.raises(InputError, match="names nothing relevant"):
        parse_questions('[{"question": "q"}]', "json")
    with pytest.raises(InputError, match="not valid JSON"):
        parse_questions("[", "json")
    with pytest.raises(InputError, match="appears twice"):
        parse_questions("question,id,chunks\na,1,2\nb,1,3\n", "csv")
    with pytest.raises(InputError, match="cannot read"):
        load_questions(tmp_path / "missing.json")


def _write_corpus(root: Path) -> None:
    (root / "fees.md").write_text(
        "# Fees\n\nThe monthly fee is 3 pesos.\n\n# Limits\n\nThe maximum balance is 900 pesos.\n",
        encoding="utf-8",
    )
    (root / "cover.md").write_text(
        "# Cover\n\nThe insurance pays after floods.\n\n# Claims\n\nFile a claim in 60 days.\n",
        encoding="utf-8",
    )


class _Scripted:
    """Answers every question with a fixed list of chunk ids (to check the arithmetic)."""

    def __init__(self, store: Store, ids: Sequence[int]) -> None:
        self.database = store.database
        self._store = store
        self._ids = list(ids)

    async def search(self, query: str, k: int = 10, **_: Any) -> list[SearchHit]:
        return (await self._store.get_chunks(self._ids))[:k]


async def test_evaluation_resolves_globs_and_sections(database: Database, tmp_path: Path) -> None:
    _write_corpus(tmp_path)
    await ingest([tmp_path], database=database, embedder=HashEmbedder())
    store = Store(database, HashEmbedder())
    chunks = {h.citation.section: h.chunk_id for h in await store.get_chunks(range(1, 20))}
    ranked = [chunks["Claims"], chunks["Limits"], chunks["Cover"], chunks["Fees"]]
    questions = parse_questions(
        json.dumps(
            [
                # Relevant: any chunk of fees.md (one target: the document).
                {"id": "doc", "question": "q", "type": "a", "relevant": {"files": ["*fees*"]}},
                # Relevant: the Claims and Fees sections, only inside the two files named.
                {
                    "id": "sec",
                    "question": "q",
                    "type": "b",
                    "relevant": {"files": ["*.md"], "sections": ["Fees", "Claims"]},
                },
                {"id": "chunk", "question": "q", "type": "b", "chunks": [chunks["Fees"]]},
            ]
        ),
        "json",
    )
    report = await evaluate_retrieval(_Scripted(store, ranked), questions, modes=["text"], k=[1, 3])
    by_id = {q.id: q.metrics for q in report.questions}
    # doc: ranks 2 and 4 are relevant; one target; two relevant chunks.
    assert by_id["doc"]["recall@1"] == 0 and by_id["doc"]["recall@3"] == 1
    assert by_id["doc"]["precision@3"] == pytest.approx(1 / 3)
    assert by_id["doc"]["mrr@3"] == 0.5
    assert by_id["doc"]["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # sec: rank 1 (Claims) relevant, Fees at rank 4 is beyond k=3: one target of two.
    assert by_id["sec"]["recall@1"] == 0.5 and by_id["sec"]["recall@3"] == 0.5
    assert by_id["sec"]["mrr@3"] == 1.0
    # chunk: only the Fees chunk, ranked 4th: nothing within k=3.
    assert by_id["chunk"]["recall@3"] == 0 and by_id["chunk"]["mrr@3"] == 0
    groups = report.modes["text"]
    assert set(groups) == {"all", "a", "b"}
    assert groups["b"].metrics["recall@1"] == pytest.approx(0.25)
    assert groups["all"].metrics["mrr@3"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert "recall@3" in report.table()

    # A target that matches nothing is reported before any search.
    bad = parse_questions('[{"question": "q", "files": ["*nothing*"]}]', "json")
    with pytest.raises(InputError, match="no stored document matches"):
        await evaluate_retrieval(store, bad)


def test_cli_eval_retrieval(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write_corpus(corpus)

    async def load() -> None:
        async with await Database.open(settings) as db:
            await ingest([corpus], database=db, embedder=HashEmbedder())

    asyncio.run(load())
    questions = tmp_path / "q.csv"
    questions.write_text(
        "question,type,files,sections\nmaximum balance,kw,*fees.md,Limits\n", encoding="utf-8"
    )
    args = ["--data-dir", str(settings.data_dir), "eval", "retrieval", str(questions)]
    url = {"PROPOSALS_DATABASE_URL": settings.database_url or ""}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in url.items():
            mp.setenv(key, value)
        assert main([*args, "--mode", "text", "--json", "-k", "1,5"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["k"] == [1, 5]
        assert data["modes"]["text"]["all"]["metrics"]["recall@1"] == 1.0
        assert main([*args, "--mode", "text"]) == 0
        out = capsys.readouterr().out
        assert "recall@10" in out and "text" in out
        assert main([*args, "--mode", "nope"]) == 2
        assert "unknown search mode" in capsys.readouterr().err
