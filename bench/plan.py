"""A plan against the run it plans, at full scale: ``make_plan`` for the reference-shaped
request (bench/full_scale.py: 720 lens items), then that run, in one process, side by side.

Both use the simulator the way ``proposals generate`` does with no provider configured: a
simulator of profile ``tier1`` in a thread of this process at time scale 0.1, its limits
learned by the gateway from its headers. Goals (issue 12): the plan predicts the run's calls
exactly and its input tokens within 1 %, and its wall time within 25 %.

Run: ``.venv/bin/python -m bench plan`` (``make bench`` runs it with the others).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.full_scale import PROFILE, ROOT, TIME_SCALE, full_scale_request

RESULTS = ROOT / "bench" / "results" / "plan.json"


async def _measure(data_dir: Path) -> dict[str, Any]:
    from proposals.config import Settings
    from proposals.db import Database
    from proposals.embeddings import embedder_from_settings
    from proposals.ingest import ingest
    from proposals.planning import make_plan
    from proposals.runs import generate, open_services

    settings = Settings(
        data_dir=data_dir,
        simulator_profile=PROFILE,
        simulator_time_scale=TIME_SCALE,
        llm_timeout_s=60,
    )
    request = full_scale_request()
    embedder = embedder_from_settings(settings)
    async with await Database.open(settings) as database:
        await ingest([ROOT / "examples" / "corpus"], database=database, embedder=embedder)
        async with open_services(
            settings, database=database, embedder=embedder, cache=False
        ) as services:
            load_plan = os.getloadavg()[0]
            plan = await make_plan(request, settings, store=services.store)
            load_run = os.getloadavg()[0]
            async with generate(request, settings, services=services) as run:
                result = await run.result()
            load_end = os.getloadavg()[0]
    nodes = {
        node: {
            "plan_calls": p.calls,
            "run_calls": result.usage_by_node[node].calls if node in result.usage_by_node else 0,
            "plan_prompt_tokens": p.prompt_tokens,
            "run_prompt_tokens": (
                result.usage_by_node[node].prompt_tokens if node in result.usage_by_node else 0
            ),
        }
        for node, p in plan.by_node.items()
    }
    return {
        "benchmark": "plan",
        "simulated": True,
        "note": f"make_plan then the run it plans, full-scale request, simulator {PROFILE} in "
        f"this process at time scale {TIME_SCALE} (limits learned from its headers), on a "
        f"shared {os.cpu_count()}-CPU machine.",
        "status": result.status,
        "calls": {"plan": plan.calls, "run": result.calls},
        "prompt_tokens": {"plan": plan.prompt_tokens, "run": result.usage.prompt_tokens},
        "completion_tokens": {
            "plan": plan.completion_tokens,
            "run": result.usage.completion_tokens,
        },
        "cost_usd": {"plan": plan.cost_usd, "run": round(result.usage.cost_usd, 6)},
        "wall_s": {"plan": plan.wall_s, "run": result.elapsed_s},
        "wall_error": round(plan.wall_s / result.elapsed_s - 1, 4),
        "plan_took_s": plan.planned_in_s,
        "lens_items": plan.lens_items,
        "nodes": nodes,
        "load_average": {"plan": load_plan, "run": load_run, "end": load_end},
        "goals": {
            "calls_exact": plan.calls == result.calls,
            "prompt_tokens_within_1pct": abs(plan.prompt_tokens - result.usage.prompt_tokens)
            <= 0.01 * result.usage.prompt_tokens,
            "wall_within_25pct": abs(plan.wall_s - result.elapsed_s) <= 0.25 * result.elapsed_s,
        },
    }


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="proposals-bench-plan-") as tmp:
        out = asyncio.run(_measure(Path(tmp)))
    out["bench_s"] = round(time.monotonic() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: out[k] for k in ("calls", "prompt_tokens", "wall_s", "goals")}))
    return 0 if all(out["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
