"""Client cost per call: the gateway against the bare ``openai`` SDK, same run, same concurrency.

Both sides send the same structured calls (a small pydantic schema as ``response_format``,
the answer parsed into it) to one ``openai-tier2-mini`` simulator in a child process, at a
time compression (``SCALE``) where the provider's latency is a few milliseconds and its
limits are far away: what bounds calls per second is the client's own CPU, on one core of
this shared 2-core machine.

* ``sdk``: ``openai.AsyncOpenAI`` over an ``httpx2.AsyncClient`` pooled for the concurrency,
  SDK retries off, ``asyncio.Semaphore(C)``; the ``response_format`` is built once and each
  answer is validated with ``model_validate_json``: the least a caller can do.
* ``gateway``: ``LLMGateway`` with its limit pinned at ``C`` (min = start = max), no cache,
  ``gw.complete(messages, schema=..., max_tokens=...)``: limiter, rate budgets learned from
  the headers, retry loop, events, spans (no-op), usage accounting, schema parsing.

Modes alternate in one process (order rotated per round), ``ROUNDS`` rounds per
concurrency; per run: calls/s and client CPU ms per call (``time.process_time``). The goal:
the gateway's best calls/s is at least 90 % of the SDK's best.

Writes ``bench/results/client_cost.json``. Run: ``.venv/bin/python -m bench client_cost``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
from pydantic import BaseModel

from proposals.config import Settings
from proposals.llm import GatewayConfig, LLMGateway, json_schema_format
from proposals.simulator import SimulatorProcess

RESULTS = Path(__file__).resolve().parent / "results" / "client_cost.json"
PROFILE = "openai-tier2-mini"
SCALE = 0.01
CALLS = int(os.environ.get("CLIENT_COST_CALLS", "800"))
ROUNDS = int(os.environ.get("CLIENT_COST_ROUNDS", "3"))
CONCURRENCY = (16, 64, 256)
MAX_TOKENS = 400
MODES = ("sdk", "gateway")
TEXT = " ".join(
    f"Sentence {i} compares savings products for households by fees, access and risk."
    for i in range(12)
)


class Answer(BaseModel):
    """The answer schema of every call."""

    title: str
    points: list[str]


def _messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": f"Item {i}. {TEXT}"},
    ]


async def _sdk(url: str, concurrency: int) -> dict[str, Any]:
    response_format = json_schema_format(Answer)
    http = httpx2.AsyncClient(
        limits=httpx2.Limits(
            max_connections=concurrency + 16, max_keepalive_connections=concurrency
        ),
        timeout=httpx2.Timeout(30.0),
    )
    client = openai.AsyncOpenAI(base_url=url, api_key="sim", http_client=http, max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        async with gate:
            completion = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=_messages(i),  # type: ignore[arg-type]
                response_format=response_format,  # type: ignore[arg-type]
                max_completion_tokens=MAX_TOKENS,
            )
        try:
            Answer.model_validate_json(completion.choices[0].message.content or "")
        except ValueError:
            failed += 1

    try:
        async with asyncio.TaskGroup() as group:
            for i in range(CALLS):
                group.create_task(one(i))
    finally:
        await client.close()
        await http.aclose()
    return {"failed": failed, "http_requests": CALLS}


async def _gateway(url: str, concurrency: int) -> dict[str, Any]:
    config = GatewayConfig.from_settings(
        Settings(),
        base_url=url,
        api_key="sim",
        simulated=True,
        concurrency_min=concurrency,
        concurrency_max=concurrency,
        concurrency_start=concurrency,
        timeout_s=30.0,
    )
    async with LLMGateway(config) as gw:
        async with asyncio.TaskGroup() as group:
            for i in range(CALLS):
                group.create_task(
                    gw.complete(_messages(i), schema=Answer, max_tokens=MAX_TOKENS, use_cache=False)
                )
        stats = gw.stats()
    return {"failed": stats.failed, "http_requests": stats.http_requests}


async def _measure(mode: str, url: str, concurrency: int, sim: SimulatorProcess) -> dict[str, Any]:
    await asyncio.to_thread(sim.reset)
    cpu = time.process_time()
    start = time.perf_counter()
    out = await (_sdk if mode == "sdk" else _gateway)(url, concurrency)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {
        "mode": mode,
        "concurrency": concurrency,
        "calls": CALLS,
        "wall_s": round(wall, 3),
        "calls_per_s": round(CALLS / wall, 1),
        "cpu_ms_per_call": round(1000 * cpu / CALLS, 3),
        **out,
    }


async def _main() -> dict[str, Any]:
    load_at_start = os.getloadavg()
    runs: list[dict[str, Any]] = []
    async with SimulatorProcess(PROFILE, time_scale=SCALE) as sim:
        url = sim.base_url
        for mode in MODES:  # warm both paths (imports, tokenizer, connections) untimed
            await (_sdk if mode == "sdk" else _gateway)(url, 16)
        for r in range(ROUNDS):
            for concurrency in CONCURRENCY:
                order = MODES if (r + CONCURRENCY.index(concurrency)) % 2 == 0 else MODES[::-1]
                for mode in order:
                    run = await _measure(mode, url, concurrency, sim)
                    runs.append(run)
                    print(json.dumps(run), flush=True)
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for mode in MODES:
        for concurrency in CONCURRENCY:
            mine = [r for r in runs if r["mode"] == mode and r["concurrency"] == concurrency]
            summary.setdefault(mode, {})[str(concurrency)] = {
                "calls_per_s": statistics.median(r["calls_per_s"] for r in mine),
                "cpu_ms_per_call": statistics.median(r["cpu_ms_per_call"] for r in mine),
                "failed": sum(r["failed"] for r in mine),
            }
    best = {m: max(v["calls_per_s"] for v in summary[m].values()) for m in MODES}
    ratio = best["gateway"] / best["sdk"]
    return {
        "profile": PROFILE,
        "time_scale": SCALE,
        "calls_per_run": CALLS,
        "rounds": ROUNDS,
        "max_tokens": MAX_TOKENS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": load_at_start,
        "summary_medians": summary,
        "best_calls_per_s": best,
        "gateway_share_of_sdk": round(ratio, 3),
        "goal_share": 0.9,
        "goal_met": ratio >= 0.9 and all(v["failed"] == 0 for v in summary["gateway"].values()),
        "runs": runs,
    }


def main() -> int:
    result = asyncio.run(_main())
    result["load_average_at_end"] = os.getloadavg()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps({k: result[k] for k in ("summary_medians", "gateway_share_of_sdk", "goal_met")})
    )
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
