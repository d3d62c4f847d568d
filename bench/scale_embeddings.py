"""The OpenAI embedder on Ray under one shared provider budget (issue 14), against the same
actors each with a gateway of its own. Writes ``bench/results/scale_embeddings.json``.

The sample corpus is ingested on a local Ray cluster by two embedding actors with
``PROPOSALS_EMBEDDING_PROVIDER=openai`` pointed at the simulator (``shared-quota`` in a child
process at time scale 0.25, its connection cap lowered to ``CAP`` and its RPM to ``RPM``), in
small chunks and one chunk per request, so that each actor sends 16 requests at once. Both
variants use the same gateway settings (adaptive limit starting at 2, at most ``LIMIT``):

* **shared**: ``PROPOSALS_SHARED_BUDGET=1``: each actor holds a lease on the endpoint's one
  budget (the limit ``LIMIT`` split between them, RPM paced at each one's fraction);
* **own gateways**: each actor's embedder sends through a gateway of its own, with no lease:
  two adaptive limits of up to ``LIMIT`` each, each pacing the whole RPM.

Figures: requests the simulator answered, refused connections, 429s, peak connections, chunks
per second end to end, failed files; the load average next to each.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale_embeddings.json"
CORPUS = ROOT / "examples" / "corpus"
CAP, LIMIT, RPM, TIME_SCALE = 8, 6, 240, 0.25


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def own_gateway_embedder(settings: Any) -> Any:
    """In an actor: the OpenAI embedder sending through a gateway of its own (no lease)."""
    from proposals.embeddings import OpenAIEmbedder, embedding_gateway_config
    from proposals.llm import LLMGateway

    gateway = LLMGateway(embedding_gateway_config(settings))
    return OpenAIEmbedder(
        settings.embedding_model, batch_size=settings.embedding_batch_size, gateway=gateway
    )


async def _variant(work: Path, pg: Any, name: str, *, shared: bool) -> dict[str, Any]:
    from proposals.config import Settings
    from proposals.ingest import RayOptions, ingest_on_ray
    from proposals.simulator import SimulatorProcess

    pg.psql(f"CREATE DATABASE {name};")
    corpus = work / "corpus"
    with SimulatorProcess(
        "shared-quota", time_scale=TIME_SCALE, max_connections=CAP, rpm=RPM
    ) as sim:
        settings = Settings(
            data_dir=work / f"data-{name}",
            database_url=pg.get_uri(name),
            embedding_provider="openai",
            embedding_model="sim-embedding",
            openai_base_url=sim.base_url,
            openai_api_key="simulator",
            chunk_tokens=64,
            chunk_overlap=8,
            embedding_batch_size=1,
            shared_budget=shared,
            shared_budget_lease_s=3.0,
            llm_concurrency_start=2,
            llm_concurrency_max=LIMIT,
        )
        factory = None if shared else functools.partial(own_gateway_embedder, settings)
        load = _load()
        report = await ingest_on_ray(
            [corpus],
            settings=settings,
            options=RayOptions(actors=2, batch_size=16),
            embedder_factory=factory,
        )
        stats = sim.stats()
    return {
        "chunks": report.chunks_written,
        "failed_files": len(report.failed),
        "seconds": round(report.seconds, 2),
        "chunks_per_s": round(report.chunks_written / report.seconds, 2),
        "requests_answered": stats["embeddings"],
        "refused_connections": stats["rejects"]["connection_refused"],
        "rate_limited_429": stats["rejects"]["rate_limit_rpm"] + stats["rejects"]["rate_limit_tpm"],
        "peak_connections": stats["peak_connections"],
        "load_before": load,
        "load_after": _load(),
    }


def main() -> int:
    import pgserver
    import ray

    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "simulator": {"profile": "shared-quota", "max_connections": CAP, "rpm": RPM},
        "time_scale": TIME_SCALE,
        "limit": LIMIT,
        "actors": 2,
    }
    with tempfile.TemporaryDirectory(prefix="bench-scale-emb-") as tmp:
        work = Path(tmp)
        shutil.copytree(CORPUS, work / "corpus", ignore=shutil.ignore_patterns("README*"))
        pg = pgserver.get_server(work / "pg", cleanup_mode="stop")
        pg.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        ray.init(
            num_cpus=os.cpu_count() or 2,
            include_dashboard=False,
            _temp_dir=str(work / "ray"),
            # The actors import this module for the own-gateway factory.
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}},
        )
        try:
            for name, shared in (("shared", True), ("own_gateways", False)):
                results[name] = asyncio.run(_variant(work, pg, name, shared=shared))
                print(name, results[name], flush=True)
        finally:
            ray.shutdown()
            pg.cleanup()
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
