"""One side of the retrieval quality benchmark, run in a child process whose ``PYTHONPATH``
selects the code (the current tree, or the baseline's ``src`` extracted from git with the
current ``proposals.evaluate`` copied in): ingest the corpus into a fresh data folder, then
evaluate every search mode. Prints one JSON object on stdout.

Usage: ``python bench/_quality_run.py DATA_DIR QUESTIONS CORPUS_PATH...``
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def _run(data_dir: Path, questions: Path, corpus: list[str]) -> dict[str, Any]:
    import proposals
    from proposals.config import Settings
    from proposals.db import Database
    from proposals.embeddings import embedder_from_settings
    from proposals.evaluate import evaluate_retrieval, load_questions
    from proposals.ingest import ingest
    from proposals.store import Store

    settings = Settings(data_dir=data_dir)
    embedder = embedder_from_settings(settings)
    await embedder.embed(["warm up the model outside the timings"])
    async with await Database.open(settings) as db:
        # Children: the parser worker processes (joined when the ingest ends). The embedded
        # PostgreSQL is not a child of this process and is not counted on either side.
        kids0 = _cpu_seconds(resource.RUSAGE_CHILDREN)
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        report = await ingest(corpus, database=db, embedder=embedder)
        wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
        kids = _cpu_seconds(resource.RUSAGE_CHILDREN) - kids0
        if report.failed:
            raise SystemExit(f"ingest failed: {[(f.path, f.reason) for f in report.failed]}")
        evaluation = await evaluate_retrieval(
            Store(db, embedder), load_questions(questions), k=(3, 10)
        )
    n = report.chunks_written
    return {
        "code": str(Path(proposals.__file__).parent),
        "chunk_tokens": settings.chunk_tokens,
        "ingest": {
            "files": len(report.added),
            "chunks": n,
            "tokens": report.tokens_written,
            "wall_s": round(wall, 2),
            "embed_s": round(report.embed_seconds, 2),
            "cpu_s_this_process": round(cpu, 2),
            "cpu_s_worker_processes": round(kids, 2),
            "chunks_per_s": round(n / wall, 2),
            "tokens_per_s": round(report.tokens_written / wall, 1),
            "chunks_per_cpu_s": round(n / (cpu + kids), 2),
        },
        "quality": evaluation.model_dump(exclude={"questions"}),
        "per_question": [q.model_dump() for q in evaluation.questions],
    }


def main() -> None:
    data_dir, questions, *corpus = sys.argv[1:]
    from pypdf import apply_configuration

    # Two SEC filings exceed pypdf's default array limit; the baseline's loader predates the
    # fix, so both sides run with the raised limit and ingest the same files.
    with apply_configuration(array_maximum_element_count=1_000_000):
        result = asyncio.run(_run(Path(data_dir), Path(questions), corpus))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
