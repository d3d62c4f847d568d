"""``proposals plan``: what a run will take, before it starts and without the LLM.

The plan is compared with a real run of the same request on the sample corpus, against the
simulator over loopback HTTP: calls exactly, input tokens within 1 %, and wall time within
25 % under a rate-limited simulator profile.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from _server import serve_in_thread
from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.pipeline import NODES
from proposals.planning import make_plan, render_plan
from proposals.runs import open_services
from proposals.server import ServerOptions
from test_pipeline import PROFILES, _request, _run


async def test_plan_predicts_the_runs_calls_tokens_and_wall_time(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    # A profile whose request and token buckets and latency, not this machine's CPU, set the
    # pace: at time scale 0.6 the run takes ~35 s, of which a few are CPU.
    settings = corpus_settings.model_copy(
        update={
            "simulator_profile": "openai-tier1-mini",
            "simulator_time_scale": 0.6,
            "llm_timeout_s": 120,
        }
    )
    request = _request()
    async with open_services(settings, embedder=embedder) as svc:
        plan = await make_plan(request, settings, store=svc.store)
        result, _ = await _run(request, settings, svc)
        stats = svc.simulator.stats()
    print(render_plan(plan))
    print(f"plan {plan.wall_s} s, run {result.elapsed_s} s; simulator {stats}")
    assert result.status == "completed", result.failed
    assert result.usage.cached_calls == 0
    assert plan.calls == result.calls == stats["completed"]
    for node in NODES:
        used = result.usage_by_node.get(node)
        assert plan.by_node[node].calls == (used.calls if used else 0), node
    assert abs(plan.prompt_tokens - result.usage.prompt_tokens) <= 0.01 * result.usage.prompt_tokens
    # the stand-in is this simulator: its answers, hence the output tokens, are the same
    assert plan.completion_tokens == result.usage.completion_tokens
    assert abs(plan.wall_s - result.elapsed_s) <= 0.25 * result.elapsed_s


def _cli_env(settings: Settings) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PROPOSALS_", "OTEL_"))} | {
        "PROPOSALS_DATABASE_URL": settings.database_url or "",
        "PROPOSALS_DATA_DIR": str(settings.data_dir),
        "PROPOSALS_SIMULATOR_PROFILE": settings.simulator_profile,
    }


async def _proposals(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("proposals")
    return await asyncio.to_thread(
        subprocess.run,
        [str(cli), *args],
        env=_cli_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_plan_command_prints_per_node_and_writes_json(
    corpus_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    request = _request()
    async with open_services(corpus_settings, embedder=embedder) as svc:
        expected = await make_plan(request, corpus_settings, store=svc.store)
    out = tmp_path / "plan.json"
    profiles = [f"--profile={p.name}: {p.description}" for p in PROFILES]
    flags = ["--brief", request.brief, "--countries", "AR,BR", *profiles, "--themes", "3"]
    flags += ["--proposals", "3", "--var", "channel=mobile app", "--var", "risk appetite=low"]
    done = await _proposals(
        corpus_settings,
        "plan",
        *flags,
        "--json",
        str(out),
        "--max-tokens",
        "20000",
        "--max-cost",
        "0.001",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["calls"] == expected.calls > 0
    assert data["prompt_tokens"] == expected.prompt_tokens
    assert data["over_budget"] is True
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"plan: {expected.lens_items} lens items")
    for node in NODES:
        assert any(line.split()[:2] == [node, str(expected.by_node[node].calls)] for line in lines)
    assert any(line.startswith("warning: token budget: the run needs about") for line in lines)
    assert any(line.startswith("warning: cost budget: the run costs about") for line in lines)
    assert any(line.startswith("estimate: lenses:") for line in lines)
    bad = await _proposals(corpus_settings, "plan", *flags, "--sim-profile", "nope")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: unknown simulator profile 'nope' (known: ")
    assert len(bad.stderr.strip().splitlines()) == 1


async def test_plan_endpoint_follows_the_tenant_and_names_bad_fields(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    from proposals.db import Database
    from proposals.keys import ApiKeys

    request = _request()
    async with await Database.open(corpus_settings) as db:
        _, local_key = await ApiKeys(db).create("local")
        _, beta_key = await ApiKeys(db).create("beta")
    async with open_services(corpus_settings, embedder=embedder) as svc:
        expected = await make_plan(request, corpus_settings, store=svc.store)
    body = request.model_dump(mode="json")
    options = ServerOptions(workers=0, heartbeat_s=1.0)
    with serve_in_thread(corpus_settings, options, embedder=embedder) as live:
        local = httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {local_key}"}, timeout=120
        )
        beta = httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {beta_key}"}, timeout=120
        )
        anonymous = httpx.AsyncClient(base_url=live.url, timeout=60)
        async with local, beta, anonymous:
            assert (await anonymous.post("/v1/runs/plan", json=body)).status_code == 401
            mine = await local.post("/v1/runs/plan", json=body)
            theirs = await beta.post("/v1/runs/plan", json=body)
            sim = await local.post(
                "/v1/runs/plan", json=body, params={"sim_profile": "azure-240k", "time_scale": 1}
            )
            bad_body = await local.post(
                "/v1/runs/plan", json={**body, "options": {**body["options"], "themes": 0}}
            )
            bad_profile = await local.post(
                "/v1/runs/plan", json=body, params={"sim_profile": "nope"}
            )
    assert mine.status_code == 200, mine.text
    assert mine.json()["calls"] == expected.calls > 0
    assert mine.json()["by_node"]["analyze"]["input_exact"] is True
    # another tenant's plan sees none of these documents: nothing to analyze
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["calls"] == 0
    assert any("no documents matched" in w for w in theirs.json()["warnings"])
    assert sim.json()["limits"]["name"] == "simulator azure-240k (time scale 1)"
    assert sim.json()["wall_s"] > mine.json()["wall_s"]
    assert bad_body.status_code == 422
    assert ["body", "options", "themes"] in [d["loc"] for d in bad_body.json()["detail"]]
    assert bad_profile.status_code == 422
    assert bad_profile.json()["detail"][0]["loc"] == ["query", "sim_profile"]
