"""Run labelled questions against the store in each search mode and score the answers."""

from __future__ import annotations

import fnmatch
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from pydantic import BaseModel

from ..errors import InputError
from ._metrics import ndcg_at_k, precision_at_k, recall_at_k, reciprocal_rank
from ._questions import Question

__all__ = [
    "MODES",
    "ModeScores",
    "QuestionScores",
    "RetrievalReport",
    "evaluate_retrieval",
]

MODES = ("hybrid", "vector", "text")


class _Hit(Protocol):
    chunk_id: int


class _Searcher(Protocol):
    """What the evaluation needs of a store: :class:`proposals.store.Store` fits."""

    database: Any

    async def search(
        self,
        query: str,
        k: int = 10,
        *,
        country: str | None = None,
        doc_types: Sequence[str] | None = None,
        mode: Any = "hybrid",
    ) -> Sequence[_Hit]: ...


class QuestionScores(BaseModel):
    """One question answered in one mode."""

    id: str
    type: str
    mode: str
    metrics: dict[str, float]
    first_relevant: int | None
    """1-based rank of the first relevant hit, None when none was retrieved."""
    hits: list[int]
    latency_ms: float


class ModeScores(BaseModel):
    """Mean metrics over a group of questions (all, or one question type) in one mode."""

    questions: int
    metrics: dict[str, float]
    latency_ms_p50: float
    latency_ms_p95: float


class RetrievalReport(BaseModel):
    """Scores per mode, overall (``"all"``) and per question type."""

    k: list[int]
    chunks: int
    """Chunks in the store when it was evaluated."""
    modes: dict[str, dict[str, ModeScores]]
    questions: list[QuestionScores]

    def metric_names(self) -> list[str]:
        top = max(self.k)
        names = [f"recall@{k}" for k in self.k] + [f"precision@{k}" for k in self.k]
        return [*names, f"mrr@{top}", f"ndcg@{top}"]

    def table(self) -> str:
        """A plain-text table: one row per mode and question group."""
        names = self.metric_names()
        head = ["mode", "questions", "n", *names, "p50 ms"]
        rows = [head]
        for mode, groups in self.modes.items():
            for group, s in groups.items():
                values = [f"{s.metrics[m]:.3f}" for m in names]
                rows.append([mode, group, str(s.questions), *values, f"{s.latency_ms_p50:.1f}"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)


@dataclass(frozen=True, slots=True)
class _Chunk:
    id: int
    path: str
    name: str
    section: str | None
    country: str | None
    doc_type: str


async def evaluate_retrieval(
    store: _Searcher,
    questions: Sequence[Question],
    *,
    modes: Sequence[str] = MODES,
    k: Sequence[int] = (3, 10),
) -> RetrievalReport:
    """Ask every question in every mode; return mean recall@k, precision@k, MRR and nDCG.

    Relevance is resolved against the stored chunks first, so a glob, section or chunk id that
    matches nothing is reported (InputError) before any search runs.
    """
    ks = sorted({int(x) for x in k})
    if not ks or ks[0] < 1:
        raise InputError("k must be at least 1")
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"unknown search mode {mode!r} (one of {', '.join(MODES)})")
    catalogue = await _catalogue(store)
    if not catalogue:
        raise InputError("the store is empty: ingest the documents the questions are about")
    by_id = {c.id: c for c in catalogue}
    resolved = [_resolve(q, catalogue, by_id) for q in questions]
    top = ks[-1]
    results: list[QuestionScores] = []
    for mode in modes:
        for q, (n_targets, n_relevant) in zip(questions, resolved, strict=True):
            started = time.perf_counter()
            hits = await store.search(
                q.question, top, country=q.country, doc_types=q.doc_types or None, mode=mode
            )
            latency = (time.perf_counter() - started) * 1000
            ids = [h.chunk_id for h in hits]
            targets = [_targets(q, by_id.get(i)) for i in ids]
            relevant = [bool(t) for t in targets]
            metrics: dict[str, float] = {}
            for n in ks:
                metrics[f"recall@{n}"] = recall_at_k(targets, n_targets, n)
            for n in ks:
                metrics[f"precision@{n}"] = precision_at_k(relevant, n)
            metrics[f"mrr@{top}"] = reciprocal_rank(relevant, top)
            metrics[f"ndcg@{top}"] = ndcg_at_k(relevant, n_relevant, top)
            first = next((i + 1 for i, r in enumerate(relevant) if r), None)
            results.append(
                QuestionScores(
                    id=q.id,
                    type=q.type,
                    mode=mode,
                    metrics=metrics,
                    first_relevant=first,
                    hits=ids,
                    latency_ms=latency,
                )
            )
    modes_out: dict[str, dict[str, ModeScores]] = {}
    for mode in modes:
        mine = [r for r in results if r.mode == mode]
        groups: dict[str, list[QuestionScores]] = defaultdict(list)
        for r in mine:
            groups[r.type].append(r)
        out = {"all": _mean(mine)}
        if len(groups) > 1 or "all" not in groups:
            out.update({t: _mean(rs) for t, rs in sorted(groups.items())})
        modes_out[mode] = out
    return RetrievalReport(k=ks, chunks=len(catalogue), modes=modes_out, questions=results)


async def _catalogue(store: _Searcher) -> list[_Chunk]:
    """Every stored chunk with what relevance can refer to (read once per evaluation)."""
    async with store.database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, d.path, c.section, c.country, c.doc_type "
            "FROM chunks c JOIN documents d ON d.id = c.document_id"
        )
        rows = await cur.fetchall()
    return [
        _Chunk(int(r[0]), str(r[1]), PurePosixPath(str(r[1])).name, r[2], r[3], str(r[4]))
        for r in rows
    ]


def _glob(pattern: str, chunk: _Chunk) -> bool:
    p = pattern.lower()
    return fnmatch.fnmatchcase(chunk.name.lower(), p) or fnmatch.fnmatchcase(chunk.path.lower(), p)


def _section(name: str, chunk: _Chunk) -> bool:
    if not chunk.section:
        return False
    wanted = name.strip().lower()
    full = chunk.section.lower()
    return full == wanted or wanted in (part.strip() for part in full.split(">"))


def _targets(q: Question, chunk: _Chunk | None) -> frozenset[str]:
    """The question's targets this chunk belongs to (empty: not relevant). With both files
    and sections, a section target counts only inside the named files."""
    if chunk is None:
        return frozenset()
    found = {f"chunk:{chunk.id}"} if chunk.id in q.chunks else set()
    in_files = any(_glob(g, chunk) for g in q.files)
    if q.sections and (in_files or not q.files):
        found |= {f"section:{s.lower()}" for s in q.sections if _section(s, chunk)}
    elif in_files:
        found.add(f"doc:{chunk.path}")
    return frozenset(found)


def _passes(q: Question, chunk: _Chunk) -> bool:
    scoped = q.country is not None and q.country.lower() != "global"
    if scoped and chunk.country is not None and chunk.country != str(q.country).upper():
        return False
    return not q.doc_types or chunk.doc_type in q.doc_types


def _resolve(q: Question, catalogue: list[_Chunk], by_id: dict[int, _Chunk]) -> tuple[int, int]:
    """(number of targets, number of relevant chunks the filters keep) for one question;
    InputError when a target matches nothing stored."""
    missing = [c for c in q.chunks if c not in by_id]
    if missing:
        raise InputError(f"question {q.id}: chunk ids not in the store: {missing}")
    docs: set[str] = set()
    for g in q.files:
        matched = {c.path for c in catalogue if _glob(g, c)}
        if not matched:
            raise InputError(f"question {q.id}: no stored document matches {g!r}")
        docs |= matched  # a document named by two globs is one target
    for s in q.sections:
        if not any(_targets(q, c) and _section(s, c) for c in catalogue):
            where = " in the files named" if q.files else ""
            raise InputError(f"question {q.id}: no stored chunk has section {s!r}{where}")
    n_targets = len(set(q.chunks)) + (
        len({s.lower() for s in q.sections}) if q.sections else len(docs)
    )
    n_relevant = sum(1 for c in catalogue if _passes(q, c) and _targets(q, c))
    return n_targets, n_relevant


def _mean(rows: list[QuestionScores]) -> ModeScores:
    names = list(rows[0].metrics) if rows else []
    latencies = sorted(r.latency_ms for r in rows)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else 0.0
    return ModeScores(
        questions=len(rows),
        metrics={n: statistics.fmean(r.metrics[n] for r in rows) for n in names},
        latency_ms_p50=statistics.median(latencies) if latencies else 0.0,
        latency_ms_p95=p95,
    )
