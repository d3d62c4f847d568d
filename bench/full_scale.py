"""Full-scale run of the proposal pipeline against the simulator, at the reference scale.

9 themes x 5 countries x 4 profiles x 4 lenses, 32k window, simulator ``tier1`` in a child
process with time compression, no response cache (every call goes over HTTP). Writes
``bench/results/full_scale.json``: wall time against the lower bound implied by the
profile's limits, calls, tokens, retries, failed items, overflow errors that reached the graph,
peak memory of this process (embedder included).

Run: ``.venv/bin/python -m bench.full_scale`` (``make bench`` runs it with the others).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "full_scale.json"
TIME_SCALE = 0.1
PROFILE = "tier1"
COUNTRIES = ["AR", "BR", "MX", "CL", "CO"]
REFERENCE = {"prompt_tokens": 812_774, "completion_tokens": 187_176}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _run(data_dir: Path, sim_url: str, profile: Any) -> dict[str, Any]:
    from proposals.config import Settings
    from proposals.db import Database
    from proposals.embeddings import embedder_from_settings
    from proposals.ingest import ingest
    from proposals.pipeline import Profile, ProposalRequest, RunOptions
    from proposals.runs import generate, open_services

    # Embedding batches of 16 keep the embedder's activations (and so peak RSS) small; the
    # default 64 alone lifts this process past 1 GiB while ingesting 400-token chunks.
    settings = Settings(
        data_dir=data_dir, context_window=32_768, llm_timeout_s=60, embedding_batch_size=16
    )
    embedder = embedder_from_settings(settings)
    t0 = time.monotonic()
    database = await Database.open(settings)
    try:
        report = await ingest([ROOT / "examples" / "corpus"], database=database, embedder=embedder)
        ingest_s = time.monotonic() - t0
        rss_after_ingest = _peak_rss_mib()
        profiles = [
            Profile(
                name="young urban savers",
                description="18-30, smartphone-first, irregular surpluses",
            ),
            Profile(
                name="rural smallholder families",
                description="seasonal income, agents, remittances",
            ),
            Profile(
                name="informal micro-entrepreneurs",
                description="daily cash flows, no payroll, shop owners",
            ),
            Profile(
                name="retirees on pensions", description="fixed monthly income, low digital skills"
            ),
        ]
        request = ProposalRequest(
            brief="savings, microinsurance and payment products for low- and middle-income households",
            countries=COUNTRIES,
            profiles=profiles,
            variables={"channel": "mobile app and agents", "risk appetite": "low"},
            options=RunOptions(themes=9, proposals_per_pair=5, evidence_k=6, context_window=32_768),
        )
        calls: list[dict[str, Any]] = []
        overflow_calls = 0
        node_time: dict[str, list[float]] = {}
        async with open_services(
            settings, database=database, embedder=embedder, cache=False, simulator_url=sim_url
        ) as services:
            started = time.monotonic()
            async with generate(request, settings, services=services) as run:
                async for event in run.events():
                    now = time.monotonic() - started
                    if event.type == "call":
                        if event.phase == "finished":
                            calls.append(
                                {"p": event.prompt_tokens, "c": event.completion_tokens, "t": now}
                            )
                        elif event.phase == "failed" and "ContextOverflowError" in (
                            event.detail or ""
                        ):
                            overflow_calls += 1
                    elif event.type in ("node_started", "node_finished"):
                        node_time.setdefault(event.node, []).append(round(now, 2))
                result = await run.result()
            wall = time.monotonic() - started
            gw = services.gateway.stats().model_dump()
    finally:
        await database.close()
    n = len(calls)
    prompt = sum(c["p"] for c in calls)
    completion = sum(c["c"] for c in calls)
    avg_p, avg_c = prompt / max(1, n), completion / max(1, n)
    rps = profile.theoretical_rps(round(avg_p), round(avg_c))
    bound = n / rps if rps > 0 else 0.0
    return {
        "scale": {
            "themes": 9,
            "countries": len(COUNTRIES),
            "profiles": 4,
            "lenses": 4,
            "lens_items": 9 * len(COUNTRIES) * 4 * 4,
            "context_window": 32_768,
        },
        "simulator": {
            "profile": PROFILE,
            "time_scale": TIME_SCALE,
            "rpm": profile.rpm,
            "tpm": profile.tpm,
            "max_connections": profile.max_connections,
        },
        "status": result.status,
        "wall_s": round(wall, 2),
        "lower_bound_s": round(bound, 2),
        "lower_bound_note": "calls / profile.theoretical_rps(mean prompt, mean completion): "
        "the least of RPM, TPM and connections/latency, without the "
        "graph's sequential stages or retrieval time",
        "wall_over_bound": round(wall / bound, 2) if bound else None,
        "calls": n,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "reference_tokens": REFERENCE,
        "retries": result.usage.retries,
        "failed_items": len(result.failed),
        "failed_item_keys": [f.item for f in result.failed][:50],
        "overflow_errors_reaching_graph": overflow_calls,
        "proposals": len(result.proposals),
        "themes": len(result.themes),
        "findings": len(result.findings),
        "warnings": len(result.warnings),
        "cost_usd_at_gpt4o_mini_prices": round(result.usage.cost_usd, 4),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "peak_rss_after_ingest_mib": round(rss_after_ingest, 1),
        "embedding_batch_size": settings.embedding_batch_size,
        "ingest_s": round(ingest_s, 2),
        "ingested_documents": len(report.added) + len(report.unchanged),
        "node_times_s": node_time,
        "gateway": {
            k: gw[k]
            for k in (
                "limit",
                "peak_in_flight",
                "limit_cuts",
                "http_requests",
                "retries_by_cause",
                "failures_by_cause",
                "rate_wait_s",
            )
        },
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def main() -> dict[str, Any]:
    """Run the benchmark and write ``bench/results/full_scale.json``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for key in list(os.environ):
        if key.startswith(("OPENAI_", "AZURE_OPENAI_", "PROPOSALS_")):
            del os.environ[key]
    from proposals.simulator import SimulatorProcess

    with (
        tempfile.TemporaryDirectory(prefix="proposals-bench-") as tmp,
        SimulatorProcess(PROFILE, time_scale=TIME_SCALE) as sim,
    ):
        out = asyncio.run(_run(Path(tmp), sim.base_url, sim.profile))
        out["simulator_stats"] = sim.stats()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "status",
                    "wall_s",
                    "lower_bound_s",
                    "calls",
                    "total_tokens",
                    "retries",
                    "failed_items",
                    "overflow_errors_reaching_graph",
                    "peak_rss_mib",
                )
            }
        )
    )
    return out


if __name__ == "__main__":
    main()
