"""One side of the large-file memory benchmark, run in a child process whose ``PYTHONPATH``
selects the code: ingest one file into a fresh embedded database with a stand-in embedder
(deterministic vectors, no model: the figure is ingest's own holding of the file, not the
model's working memory, and a 50 MB file takes minutes instead of an hour). Samples this
process's RSS every 0.2 s. Prints one JSON object on stdout.

Usage: ``python bench/_ingest_memory_run.py DATA_DIR FILE``
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_DIM = 384  # all-MiniLM-L6-v2's


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class StandInEmbedder:
    """Unit vectors seeded by each text's CRC: instant, deterministic, 384 dimensions."""

    name = "bench/stand-in-384"
    dim = _DIM

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), _DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
            v = rng.standard_normal(_DIM).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


async def _run(data_dir: Path, file: Path) -> dict[str, Any]:
    import proposals
    from proposals.config import Settings
    from proposals.db import Database
    from proposals.ingest import ingest

    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append((round(time.perf_counter() - t0, 1), round(_rss_mib(), 1)))

    settings = Settings(data_dir=data_dir)
    async with await Database.open(settings) as db:
        before = _rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        report = await ingest([file], database=db, embedder=StandInEmbedder())
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        again = time.perf_counter()
        second = await ingest([file], database=db, embedder=StandInEmbedder())
        unchanged_s = time.perf_counter() - again
    if report.failed:
        raise SystemExit(f"ingest failed: {[(f.path, f.reason) for f in report.failed]}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "code": str(Path(proposals.__file__).parent),
        "chunks": report.chunks_written,
        "rss_before_ingest_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_above_start_mib": round(peak - before, 1),
        "ingest_wall_s": round(wall, 1),
        "reingest_unchanged_s": round(unchanged_s, 2),
        "reingest_status": "unchanged" if second.unchanged else "not unchanged",
        "rss_timeline": samples[:: max(1, len(samples) // 200)],
    }


def main() -> None:
    data_dir, file = sys.argv[1:]
    print(json.dumps(asyncio.run(_run(Path(data_dir), Path(file)))))


if __name__ == "__main__":
    main()
