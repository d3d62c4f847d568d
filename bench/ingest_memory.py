"""Peak memory of ingesting one large text file (issue 8, item 3), before and after streaming.

Writes a deterministic 50 MB plain-text file (paragraphs of generated words), then ingests it
into a fresh embedded database in a child process per side: "before" is the code at
``BASELINE`` (extracted from git: files held whole through load, split, embed and write),
"after" this tree (slices through split -> embed -> write). Both use the same stand-in
embedder (see ``_ingest_memory_run.py``), so the figures are ingest's own memory. Results go
to ``bench/results/ingest_memory.json`` (and a PNG of RSS over time).

Run it alone: ``flock /work/notes/bench.lock .venv/bin/python -m bench ingest_memory``.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

from bench._sides import ROOT, extract_src, run_child

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_memory.json"
PLOT = RESULTS.with_suffix(".png")
BASELINE = "890336e"  # main before streaming: a file held whole
SIZE = int(os.environ.get("BENCH_INGEST_BYTES", "50000000"))


def write_text_file(path: Path, size: int = SIZE, seed: int = 7) -> None:
    """Paragraphs of 40-120 words drawn from the sample corpus's vocabulary (so tokens per
    byte are those of ordinary English prose), up to ``size`` bytes."""
    rng = random.Random(seed)
    words: set[str] = set()
    for doc in sorted((ROOT / "examples" / "corpus").rglob("*.md")):
        words.update(re.findall(r"[A-Za-z][a-z]+", doc.read_text("utf-8")))
    vocab = sorted(words)
    written = 0
    with path.open("w", encoding="utf-8") as f:
        f.write("Generated field notes\n\n")
        while written < size:
            para = " ".join(rng.choices(vocab, k=rng.randint(40, 120))).capitalize() + ".\n\n"
            f.write(para)
            written += len(para)


def run_side(src: Path, data_dir: Path, file: Path) -> dict[str, Any]:
    return run_child("_ingest_memory_run.py", src, data_dir, file)


def plot(results: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    for side in ("before", "after"):
        points = results[side]["rss_timeline"]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=side)
    ax.set_xlabel("seconds into ingest")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Ingesting one 50 MB text file: resident memory")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)


def main() -> int:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ingest-memory-") as tmp:
        work = Path(tmp)
        file = work / "large.txt"
        write_text_file(file)
        before_src = extract_src(BASELINE, work / "before")
        results: dict[str, Any] = {
            "file_bytes": file.stat().st_size,
            "baseline": BASELINE,
            "load_average_start": [round(x, 2) for x in load],
        }
        results["before"] = run_side(before_src, work / "data-before", file)
        results["after"] = run_side(ROOT / "src", work / "data-after", file)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    b, a = results["before"], results["after"]
    results["peak_ratio_before_over_after"] = round(b["peak_rss_mib"] / a["peak_rss_mib"], 2)
    results["notes"] = (
        "Peak RSS (ru_maxrss) of the ingesting process; the embedded PostgreSQL is another "
        "process. Both sides use the same stand-in embedder (no model loaded), so the local "
        "model's own ~300-400 MiB and its working memory come on top, equally."
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    plot(results)
    for side in ("before", "after"):
        r = results[side]
        print(
            f"{side}: peak {r['peak_rss_mib']} MiB ({r['peak_above_start_mib']} above start), "
            f"{r['chunks']} chunks in {r['ingest_wall_s']} s; unchanged re-ingest "
            f"{r['reingest_unchanged_s']} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
