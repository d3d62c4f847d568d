"""Ingest speed side by side (issue 11, item 3): the code at issue 11's filing against this
tree, in one invocation, each side in a fresh process with its own embedded PostgreSQL.

Sides: ``before`` is the baseline commit (float32 on two threads, one file per embedding call,
stages in sequence); ``after-1t`` is this tree with ``PROPOSALS_EMBEDDING_THREADS=1`` (the
previous default, half of this machine's cores); ``after`` is this tree as configured by
default. Each side ingests the set, then answers the set's labelled questions in every search
mode (``bench/_quality_run.py``), so speed and retrieval quality come from the same ingest.
The sample corpus runs ``ROUNDS`` interleaved rounds; the SEC 10-Q set (20 PDFs) one round of
``before``, ``after`` and ``after-1t``. CPU seconds count the ingesting process and its parser
worker processes (PostgreSQL, a separate server, is counted on neither side). Results:
``bench/results/ingest_speed.json`` → ``latest`` (the previous ``latest`` moves to
``earlier_runs``; other entries are kept).

Run it alone: ``flock /work/notes/bench.lock .venv/bin/python -m bench ingest_speed``
(``BENCH_SPEED_SETS=examples`` for the sample corpus only; ``BENCH_SPEED_ROUNDS=N`` rounds of
it; ``BENCH_SPEED_ALSO=COMMIT`` adds that commit's code as a side ``at-COMMIT``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._sides import extract_src
from bench.retrieval_quality import BASELINE, ROOT, SETS, baseline_tree, run_side

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_speed.json"
ROUNDS = 2
METRICS = ("recall@3", "recall@10", "mrr@10")


def _side(src: Path, work: Path, name: str, set_name: str, threads: str | None) -> dict[str, Any]:
    questions, corpus = SETS[set_name]
    if threads is None:
        os.environ.pop("PROPOSALS_EMBEDDING_THREADS", None)
    else:
        os.environ["PROPOSALS_EMBEDDING_THREADS"] = threads
    load = os.getloadavg()[0]
    started = time.time()
    try:
        out = run_side(src, work / f"{set_name}-{name}-{started:.0f}", questions, corpus)
    finally:
        os.environ.pop("PROPOSALS_EMBEDDING_THREADS", None)
    ingest = out["ingest"]
    modes = out["quality"]["modes"]
    return {
        "side": name,
        "load_average_1m_at_start": round(load, 2),
        **{k: ingest[k] for k in ("files", "chunks", "wall_s", "embed_s", "chunks_per_s")},
        "cpu_s_ingesting_process": ingest["cpu_s_this_process"],
        "cpu_s_worker_processes": ingest.get("cpu_s_worker_processes", 0.0),
        "chunks_per_cpu_s": ingest["chunks_per_cpu_s"],
        "quality": {
            mode: {m: round(modes[mode]["all"]["metrics"][m], 3) for m in METRICS} for mode in modes
        },
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by.setdefault(row["side"], []).append(row)
    out: dict[str, Any] = {}
    for side, runs in by.items():
        out[side] = {
            "chunks_per_s_best": max(r["chunks_per_s"] for r in runs),
            "chunks_per_s_runs": [r["chunks_per_s"] for r in runs],
            "chunks_per_cpu_s_runs": [r["chunks_per_cpu_s"] for r in runs],
        }
    if "before" in out:
        base = out["before"]
        for side, s in out.items():
            pairs = [
                (a["chunks_per_s"], b["chunks_per_s"])
                for a, b in zip(by[side], by["before"], strict=False)
            ]
            s["speedup_per_round"] = [round(a / b, 2) for a, b in pairs]
            s["speedup_best_vs_best"] = round(s["chunks_per_s_best"] / base["chunks_per_s_best"], 2)
    return out


def _save(run: dict[str, Any], kept: dict[str, Any]) -> None:
    RESULTS.write_text(json.dumps({"latest": run, **kept}, indent=2) + "\n")


def _history() -> dict[str, Any]:
    """What the results file holds besides ``latest``, with ``latest`` moved to the front of
    ``earlier_runs``."""
    try:
        old: dict[str, Any] = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {}
    if "latest" in old:
        old["earlier_runs"] = [old.pop("latest"), *old.get("earlier_runs", [])]
    return old


def main() -> int:
    sets = os.environ.get("BENCH_SPEED_SETS", "examples,sec-10q").split(",")
    kept = _history()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": f"after = {head} (this tree), before = {BASELINE}",
        "baseline": BASELINE,
        "command": "flock /work/notes/bench.lock .venv/bin/python -m bench ingest_speed",
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="ingest-speed-") as tmp:
        work = Path(tmp)
        before = baseline_tree(work / "before")
        here = ROOT / "src"
        examples = [("before", before, None), ("after-1t", here, "1"), ("after", here, None)]
        also = os.environ.get("BENCH_SPEED_ALSO")  # a commit to compare too (sample corpus)
        if also:
            examples.append((f"at-{also}", extract_src(also, work / also), None))
        plan = {
            "examples": examples * int(os.environ.get("BENCH_SPEED_ROUNDS", ROUNDS)),
            "sec-10q": [("before", before, None), ("after", here, None), ("after-1t", here, "1")],
        }
        for set_name in sets:
            rows = []
            for name, src, threads in plan[set_name]:
                row = _side(src, work, name, set_name, threads)
                print(json.dumps({"set": set_name, **row}), flush=True)
                rows.append(row)
            results["sets"][set_name] = {"runs": rows, "summary": _summary(rows)}
            _save(results, kept)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    _save(results, kept)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
