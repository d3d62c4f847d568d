"""A real run traced end to end: the spans a loopback OTLP receiver gets, and their parents.

The OpenTelemetry SDK is installed once for this session (a process has one global tracer
provider), exporting over real HTTP to :class:`OTLPReceiver`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from _otlp import OTLPReceiver, ReceivedSpan
from _server import serve_in_thread
from proposals.client import ProposalsClient
from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.observe import ATTR, TracingSetup, setup_tracing
from proposals.pipeline import LENSES
from proposals.runs import open_services
from proposals.server import ServerOptions
from test_pipeline import _request, _run


@pytest.fixture(scope="session")
def otlp() -> Iterator[tuple[OTLPReceiver, TracingSetup]]:
    with OTLPReceiver() as rx:
        setup = setup_tracing(Settings(), environ={"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url})
        if setup is None:
            pytest.skip("another tracer provider is installed in this process")
        yield rx, setup


def _spans_of_run(rx: OTLPReceiver, setup: TracingSetup, run_id: str) -> list[ReceivedSpan]:
    setup.provider.force_flush()
    rx.wait_for(
        lambda spans: any(
            s.name == "invoke_workflow proposals" and s.attributes.get(ATTR.RUN_ID) == run_id
            for s in spans
        )
    )
    root = next(
        s
        for s in rx.spans
        if s.name == "invoke_workflow proposals" and s.attributes.get(ATTR.RUN_ID) == run_id
    )
    return [s for s in rx.spans if s.trace_id == root.trace_id]


async def _traced_run(
    settings: Settings, embedder: Embedder, otlp: Any
) -> tuple[Any, list[ReceivedSpan], dict[str, Any]]:
    rx, setup = otlp
    async with open_services(settings, embedder=embedder) as svc:
        result, _ = await _run(_request(), settings, svc)
        stats = svc.simulator.stats()
    return result, _spans_of_run(rx, setup, result.run_id), stats


async def test_run_spans_nest_run_node_batch_call_with_genai_attributes(
    corpus_settings: Settings, embedder: Embedder, otlp: Any
) -> None:
    result, spans, stats = await _traced_run(corpus_settings, embedder, otlp)
    assert result.status == "completed"
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent_span_id == ""]
    assert root.name == "invoke_workflow proposals"
    assert root.attributes[ATTR.OPERATION] == "invoke_workflow"
    assert sorted(root.attributes[ATTR.COUNTRY]) == ["AR", "BR"]
    nodes = {s.attributes[ATTR.NODE]: s for s in spans if s.name.startswith("invoke_agent ")}
    assert {"retrieve", "analyze", "plan", *LENSES, "synthesize"} <= set(nodes)
    assert all(n.parent_span_id == root.span_id for n in nodes.values())
    batches = [s for s in spans if s.name.startswith("batch ")]
    for b in batches:
        assert by_id[b.parent_span_id] is nodes[b.attributes[ATTR.NODE]]
        assert b.attributes[ATTR.COUNTRY] in ("AR", "BR")
    assert {b.attributes[ATTR.NODE] for b in batches} == {*LENSES, "synthesize"}
    chats = [s for s in spans if s.name.startswith("chat ")]
    # every LLM call of the run is one client span, and its tokens are the provider's
    assert len(chats) == result.usage.calls + result.usage.cached_calls
    assert sum(c.attributes[ATTR.INPUT_TOKENS] for c in chats) == stats["prompt_tokens"]
    assert sum(c.attributes[ATTR.OUTPUT_TOKENS] for c in chats) == stats["completion_tokens"]
    for c in chats:
        parent = by_id[c.parent_span_id]
        node = c.attributes[ATTR.NODE]
        assert parent.attributes[ATTR.NODE] == node
        assert parent.name in (f"batch {node}", f"invoke_agent {node}")
        assert c.kind == trace.SpanKind.CLIENT.value + 1  # OTLP numbering is the API's + 1
        assert c.attributes[ATTR.OPERATION] == "chat"
        assert c.attributes[ATTR.PROVIDER] == "proposals.simulator"
        assert c.attributes[ATTR.REQUEST_MODEL] == corpus_settings.llm_model
        assert c.attributes[ATTR.RESPONSE_MODEL]
        assert c.attributes[ATTR.FINISH_REASONS] == ["stop"]
        assert c.attributes[ATTR.RUN_ID] == result.run_id
        assert c.attributes[ATTR.CACHE_HIT] is False
        assert ATTR.RETRIES in c.attributes
        assert ATTR.INPUT_MESSAGES not in c.attributes
        assert ATTR.OUTPUT_MESSAGES not in c.attributes
    # accounting: per node and per model, summing to the provider's own counters
    by_node, by_model = result.usage_by_node, result.usage_by_model
    assert {"analyze", *LENSES, "synthesize"} <= set(by_node)
    assert sum(n.prompt_tokens for n in by_node.values()) == stats["prompt_tokens"]
    assert sum(n.completion_tokens for n in by_node.values()) == stats["completion_tokens"]
    assert sum(n.calls for n in by_node.values()) == result.usage.calls
    assert result.usage.prompt_tokens == stats["prompt_tokens"]
    assert result.usage.completion_tokens == stats["completion_tokens"]
    assert stats["requests"] == stats["completed"] >= result.usage.calls
    (model,) = by_model
    assert model == corpus_settings.llm_model
    assert by_model[model].prompt_tokens == stats["prompt_tokens"]
    assert result.calls == len(chats)
    assert all(n.wall_s > 0 for n in by_node.values())
    # no span of the run carries the brief (prompt text) unless the user opted in
    assert not any(
        "savings and microinsurance" in str(v) for s in spans for v in s.attributes.values()
    )


async def test_report_draws_every_node_of_a_stored_run(
    corpus_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    async with open_services(corpus_settings, embedder=embedder) as svc:
        result, _ = await _run(_request(), corpus_settings, svc)
    png, out = tmp_path / "timeline.png", tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROPOSALS_", "OTEL_"))} | {
        "PROPOSALS_DATABASE_URL": corpus_settings.database_url or "",
        "PROPOSALS_DATA_DIR": str(corpus_settings.data_dir),
    }
    cli = Path(sys.executable).with_name("proposals")
    done = await asyncio.to_thread(
        subprocess.run,
        [str(cli), "report", result.run_id, "--timeline", str(png), "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    nodes_with_calls = ["analyze", *LENSES, "synthesize"]
    assert f"timeline ({', '.join(nodes_with_calls)})" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.read_text())
    assert data["calls"] == result.calls
    # rebuilt from the stored events, the accounting matches the run's own
    assert data["usage_by_node"] == {k: v.model_dump() for k, v in result.usage_by_node.items()}
    assert {c["node"] for c in data["timeline"]["calls"]} == set(nodes_with_calls)
    for line in ("node", "analyze", "synthesize", "total"):
        assert line in done.stderr
    bad = await asyncio.to_thread(
        subprocess.run,
        [str(cli), "report", "nope", "--timeline", str(tmp_path / "x.txt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip() == f"error: --timeline must name a .png file, got {tmp_path / 'x.txt'}"
    )


async def test_prompt_text_only_when_opted_in(
    corpus_settings: Settings, embedder: Embedder, otlp: Any
) -> None:
    settings = corpus_settings.model_copy(update={"trace_content": True})
    _, spans, _ = await _traced_run(settings, embedder, otlp)
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert chats
    for c in chats:
        assert "savings and microinsurance" in c.attributes[ATTR.INPUT_MESSAGES]
        assert c.attributes[ATTR.OUTPUT_MESSAGES].startswith('[{"role": "assistant"')


async def test_timeline_endpoint_matches_the_run(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    options = ServerOptions(auth=False, workers=1, slots=2, heartbeat_s=1.0)
    body = _request().model_dump(mode="json")
    with serve_in_thread(corpus_settings, options, embedder=embedder) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            run_id = (await http.post("/v1/runs", json=body)).json()["id"]
            async with ProposalsClient(live.url) as client, asyncio.timeout(300):
                await client.wait(run_id)
            result = (await http.get(f"/v1/runs/{run_id}/proposals")).json()
            got = await http.get(f"/v1/runs/{run_id}/timeline")
            assert got.status_code == 200, got.text
            missing = await http.get("/v1/runs/nope/timeline")
    data = got.json()
    assert data["status"] == "completed"
    assert data["calls"] == result["calls"] == len(data["timeline"]["calls"]) > 0
    assert data["usage_by_node"] == result["usage_by_node"]
    assert data["usage_by_model"] == result["usage_by_model"]
    calls = data["timeline"]["calls"]
    assert {c["node"] for c in calls} == {"analyze", *LENSES, "synthesize"}
    assert all(c["outcome"] == "ok" and c["end_s"] >= c["start_s"] for c in calls)
    assert missing.status_code == 404
