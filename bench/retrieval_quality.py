"""Retrieval quality and ingest speed, before and after, side by side in one run.

Two labelled sets: the sample corpus with ``examples/questions/corpus.json`` (40 questions
written for it: keyword, paraphrase, code or number), and the SEC 10-Q set (20 real filings,
195 questions whose relevant documents are file-name globs), read from
``../shared/data/sec-10q/`` beside the repository and skipped with a message when absent.

For each set, "before" (the code at ``BASELINE``, extracted from git, with today's
``proposals.evaluate`` copied in to score it) and "after" (this tree) each run in a child
process with a fresh embedded PostgreSQL: ingest the corpus (timed: wall and CPU seconds),
then ask every question in the three search modes. The machine is shared, so absolute speeds
move with its load; the two sides run back to back. Writes
``bench/results/retrieval_quality.json`` and ``retrieval_quality.png``.
``BENCH_QUALITY_SETS=examples`` runs one set only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._sides import ROOT, extract_src, run_child

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval_quality.json"
PLOT = RESULTS.with_suffix(".png")
BASELINE = "04e897e"  # main before issue 11: AND full text, reciprocal rank fusion, 400 tokens


def _shared() -> Path:
    """``../shared`` beside the checkout; for a git worktree, beside the main checkout."""
    beside = ROOT.parent / "shared"
    if beside.exists():
        return beside
    common = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Path(common).parent.parent / "shared" if common else beside


SEC = _shared() / "data" / "sec-10q"
SETS = {
    "examples": (ROOT / "examples" / "questions" / "corpus.json", [ROOT / "examples" / "corpus"]),
    "sec-10q": (SEC / "qna_data.csv", [SEC / "docs"]),
}
METRICS = ("recall@3", "recall@10", "mrr@10")
MODES = ("hybrid", "vector", "text")


def baseline_tree(dest: Path) -> Path:
    """The baseline's ``src`` from git, with the current evaluation package added."""
    src = extract_src(BASELINE, dest)
    shutil.copytree(ROOT / "src" / "proposals" / "evaluate", src / "proposals/evaluate")
    return src


def run_side(src: Path, data_dir: Path, questions: Path, corpus: list[Path]) -> dict[str, Any]:
    result = run_child("_quality_run.py", src, data_dir, questions, *corpus)
    result.pop("per_question", None)
    return result


def checks(after: dict[str, Any]) -> dict[str, bool]:
    """Hybrid at least as good as each half on recall@3, recall@10 and MRR."""
    modes = after["quality"]["modes"]
    hybrid = modes["hybrid"]["all"]["metrics"]
    return {
        f"hybrid >= {other} on {m}": hybrid[m] >= modes[other]["all"]["metrics"][m] - 1e-9
        for other in ("vector", "text")
        for m in METRICS
    }


def plot(results: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sets = [s for s in results["sets"] if "after" in results["sets"][s]]
    fig, axes = plt.subplots(1, len(sets) + 1, figsize=(5 * (len(sets) + 1), 4.2))
    for ax, name in zip(axes, sets, strict=False):
        data = results["sets"][name]
        labels, before, after = [], [], []
        for mode in MODES:
            for m in METRICS:
                labels.append(f"{mode}\n{m}")
                before.append(data["before"]["quality"]["modes"][mode]["all"]["metrics"][m])
                after.append(data["after"]["quality"]["modes"][mode]["all"]["metrics"][m])
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], before, 0.4, label="before")
        ax.bar([x + 0.2 for x in xs], after, 0.4, label="after")
        ax.set_xticks(list(xs), labels, fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: quality per mode")
        ax.legend(fontsize=8)
    ax = axes[-1]
    for i, name in enumerate(sets):
        data = results["sets"][name]
        ax.bar(i - 0.2, data["before"]["ingest"]["chunks_per_s"], 0.4, color="C0")
        ax.bar(i + 0.2, data["after"]["ingest"]["chunks_per_s"], 0.4, color="C1")
    ax.set_xticks(range(len(sets)), sets)
    ax.set_title("ingest chunks/s (before, after)")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    return True


def main() -> int:
    wanted = [s for s in os.environ.get("BENCH_QUALITY_SETS", ",".join(SETS)).split(",") if s]
    results: dict[str, Any] = {
        "baseline_commit": BASELINE,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": round(os.getloadavg()[0], 2),
        "sets": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        base_src = baseline_tree(Path(tmp) / "baseline")
        for name in wanted:
            questions, corpus = SETS[name]
            if not questions.exists():
                print(f"skipping {name}: {questions} is absent (expected beside the repository)")
                results["sets"][name] = {"skipped": f"{questions} absent"}
                continue
            entry: dict[str, Any] = {}
            for side, src in (("before", base_src), ("after", ROOT / "src")):
                print(f"{name}: {side} ...", flush=True)
                entry[side] = run_side(src, Path(tmp) / f"{name}-{side}", questions, corpus)
                print(json.dumps(entry[side]["ingest"]), flush=True)
            b, a = entry["before"]["ingest"], entry["after"]["ingest"]
            entry["ingest_speedup"] = {
                "chunks_per_s": round(a["chunks_per_s"] / b["chunks_per_s"], 2),
                "chunks_per_cpu_s": round(a["chunks_per_cpu_s"] / b["chunks_per_cpu_s"], 2),
                "corpus_wall_time": round(b["wall_s"] / a["wall_s"], 2),
            }
            entry["checks_after"] = checks(entry["after"])
            results["sets"][name] = entry
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results)
    for name, entry in results["sets"].items():
        if "after" not in entry:
            continue
        for side in ("before", "after"):
            for mode in MODES:
                m = entry[side]["quality"]["modes"][mode]["all"]["metrics"]
                print(name, side, mode, {k: round(m[k], 3) for k in METRICS})
        print(name, "ingest speedup", entry["ingest_speedup"], "checks", entry["checks_after"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
