"""Scaling out (issue 14): ingestion on Ray against the local ingest, three processes sharing one
provider budget, and the database's write rate. Writes ``bench/results/scale.json``.

1. **Ingest.** The sample corpus copied three times (each copy's text marked, so every file is
   new) ingested into a fresh database by the local ingest, then on a local Ray cluster (this
   machine's CPUs) with 1 and with 2 embedding actors; chunks per second end to end (Ray:
   actor start and model load included, the cluster's own start not).
2. **Shared budget.** Three load processes (``tests/_share_load.py``: one real gateway each,
   40 concurrent callers) against the simulator's ``shared-quota`` profile (24 connections,
   600 RPM) in a child process at time scale 0.25 (so the RPM limit is 40 calls per wall
   second), for ``SCALE_SHARE_SECONDS`` (60): calls per second after the first cut episode
   as a share of the limit, refused connections, 429s and failed calls; then the same three
   processes each with its own gateway and no shared budget, as the baseline.
3. **Database writes.** ``DocumentSink.write`` of synthetic documents (20 chunks of 384-d unit
   vectors each) into a fresh database: the chunks per second one writer process stores, the
   ceiling of any ingest however many actors embed.

Load averages are recorded next to each figure (the machine is shared).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.json"
CORPUS = ROOT / "examples" / "corpus"
LOAD = ROOT / "tests" / "_share_load.py"
COPIES = int(os.environ.get("SCALE_COPIES", "3"))
SHARE_SECONDS = float(os.environ.get("SCALE_SHARE_SECONDS", "60"))
TIME_SCALE = 0.25


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _corpus(work: Path) -> Path:
    root = work / "corpus"
    for n in range(COPIES):
        copy = root / f"copy{n}"
        shutil.copytree(CORPUS, copy, ignore=shutil.ignore_patterns("README*"))
        for path in copy.rglob("*"):
            if path.suffix in (".md", ".txt"):
                path.write_text(path.read_text(encoding="utf-8") + f"\n\nCopy {n}.\n")
    return root


async def _ingest(work: Path, pg: Any) -> dict[str, Any]:
    import ray

    from proposals.config import Settings
    from proposals.ingest import RayOptions, ingest, ingest_on_ray

    corpus = _corpus(work)
    out: dict[str, Any] = {"files": sum(1 for p in corpus.rglob("*") if p.is_file())}

    def fresh(name: str) -> Settings:
        pg.psql(f"CREATE DATABASE {name};")
        return Settings(data_dir=work / f"data-{name}", database_url=pg.get_uri(name))

    load = _load()
    report = await ingest([corpus], settings=fresh("local"))
    out["local"] = _rate(report, load)
    ray.init(
        num_cpus=os.cpu_count() or 2,
        include_dashboard=False,
        _temp_dir=str(work / "ray"),
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    try:
        for actors in (1, 2):
            load = _load()
            report = await ingest_on_ray(
                [corpus], settings=fresh(f"ray{actors}"), options=RayOptions(actors=actors)
            )
            out[f"ray_{actors}_actors"] = _rate(report, load)
    finally:
        ray.shutdown()
    for key in ("ray_1_actors", "ray_2_actors"):
        out[f"{key}_over_local"] = round(out[key]["chunks_per_s"] / out["local"]["chunks_per_s"], 2)
    return out


def _rate(report: Any, load_before: list[float]) -> dict[str, Any]:
    assert report.ok, report.failed
    return {
        "chunks": report.chunks_written,
        "seconds": round(report.seconds, 2),
        "chunks_per_s": round(report.chunks_written / report.seconds, 2),
        "load_before": load_before,
        "load_after": _load(),
    }


def _share(work: Path, pg: Any, *, alone: bool) -> dict[str, Any]:
    import urllib.request

    import psycopg

    from proposals.simulator import SimulatorProcess

    name = "alone" if alone else "shared"
    pg.psql(f"CREATE DATABASE share_{name};")
    url = pg.get_uri(f"share_{name}")
    asyncio.run(_migrate(url, work))
    load = _load()
    with SimulatorProcess("shared-quota", time_scale=TIME_SCALE) as sim:
        stats_url = sim.base_url.rsplit("/v1", 1)[0] + "/sim/stats"

        def stats() -> dict[str, Any]:
            with urllib.request.urlopen(stats_url, timeout=10) as r:
                return dict(json.load(r))

        args = ["--seconds", str(SHARE_SECONDS), "--lease", "3"] + (["--alone"] if alone else [])
        procs = [
            subprocess.Popen(
                [sys.executable, str(LOAD), url, sim.base_url, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(3)
        ]
        samples = []
        first_cut_at = None
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            s = stats()
            now = time.monotonic()
            if not alone and first_cut_at is None:
                with psycopg.connect(url) as conn:
                    row = conn.execute("SELECT generation FROM provider_budgets").fetchone()
                if row and row[0] >= 1:
                    first_cut_at = now
            samples.append((now, s["completed"], s["rejects"]["connection_refused"], s))
        finals = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        budget = None
        if not alone:
            with psycopg.connect(url) as conn:
                budget = conn.execute(
                    "SELECT concurrency, ceiling, generation FROM provider_budgets"
                ).fetchone()
    limit_per_s = 600 / (60 * TIME_SCALE)
    # Steady window: from 5 s after the first cut (shared) or after 10 s (alone) to the end
    # of the samples taken while all three ran.
    start_at = (first_cut_at + 5) if first_cut_at else samples[0][0] + 10
    window = [x for x in samples if x[0] >= start_at]
    first, last = window[0], window[-1]
    rate = (last[1] - first[1]) / (last[0] - first[0])
    final = samples[-1][3]
    return {
        "processes": 3,
        "profile": "shared-quota (24 connections, 600 RPM, 300,000 TPM)",
        "time_scale": TIME_SCALE,
        "limit_calls_per_s": limit_per_s,
        "steady_window_s": round(last[0] - first[0], 1),
        "calls_per_s": round(rate, 2),
        "share_of_limit": round(rate / limit_per_s, 3),
        "refused_connections_total": final["rejects"]["connection_refused"],
        "refused_after_first_episode": last[2] - first[2],
        "rate_limited_429": final["rejects"]["rate_limit_rpm"] + final["rejects"]["rate_limit_tpm"],
        "peak_connections": final["peak_connections"],
        "shared_limit_at_end": None if budget is None else round(budget[0], 1),
        "shared_ceiling": None if budget is None else budget[1],
        "shared_cuts": None if budget is None else budget[2],
        "calls_ok": sum(f["ok"] for f in finals),
        "calls_failed": sum(f["failed"] for f in finals),
        "load_before": load,
        "load_after": _load(),
    }


async def _migrate(url: str, work: Path) -> None:
    from proposals.config import Settings
    from proposals.db import Database

    async with await Database.open(Settings(data_dir=work / "mig", database_url=url)):
        pass


async def _db_writes(work: Path, pg: Any, docs: int = 150, per_doc: int = 20) -> dict[str, Any]:
    from proposals.config import Settings
    from proposals.db import Database
    from proposals.ingest import Chunk, DocumentSink, PreparedFile, ResolvedMeta

    pg.psql("CREATE DATABASE writes;")
    settings = Settings(data_dir=work / "data-writes", database_url=pg.get_uri("writes"))
    rng = np.random.default_rng(0)
    words = [f"word{i}" for i in range(5000)]
    load = _load()
    async with await Database.open(settings) as db:
        sink = DocumentSink(db, "bench/synthetic-384", tenant="local")
        await sink.open(docs)
        started = time.perf_counter()
        for d in range(docs):
            chunks = [
                Chunk(i, " ".join(rng.choice(words, 250)), None, None, 300) for i in range(per_doc)
            ]
            vectors = rng.normal(size=(per_doc, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            item = PreparedFile(
                f"/synthetic/{d}.txt",
                f"{d:064x}",
                ResolvedMeta(f"doc {d}", "AR", "other"),
                {},
                chunks,
            )
            await sink.write(item, vectors)
        seconds = time.perf_counter() - started
    assert sink.report.ok
    return {
        "chunks": docs * per_doc,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(docs * per_doc / seconds, 1),
        "note": "one writer, one COPY per 20-chunk document, HNSW and full-text upkeep included",
        "load_before": load,
        "load_after": _load(),
    }


def main() -> int:
    import pgserver

    results: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        pg = pgserver.get_server(work / "pg", cleanup_mode="stop")
        pg.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        try:
            results["db_writes"] = asyncio.run(_db_writes(work, pg))
            print("db writes", results["db_writes"], flush=True)
            results["shared_budget"] = _share(work, pg, alone=False)
            print("shared", results["shared_budget"], flush=True)
            results["no_shared_budget"] = _share(work, pg, alone=True)
            print("alone", results["no_shared_budget"], flush=True)
            results["ingest"] = asyncio.run(_ingest(work, pg))
            print("ingest", results["ingest"], flush=True)
        finally:
            pg.cleanup()
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
