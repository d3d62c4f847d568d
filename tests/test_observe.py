"""Tracing setup, span helpers, price overrides and the timeline drawing.

Spans are checked where they arrive: a real OTLP/HTTP receiver on loopback (tests/_otlp.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from _otlp import OTLPReceiver
from proposals.config import Settings
from proposals.errors import ConfigError
from proposals.llm import GatewayConfig, ModelPrice, PriceTable, load_prices
from proposals.observe import ATTR, TimelineBuilder, draw_timeline, setup_tracing

_EMIT = textwrap.dedent(
    """
    from proposals.config import Settings
    from proposals.observe import setup_tracing, run_span, node_span, chat_span, record_chat
    setup = setup_tracing(Settings())
    assert setup is not None, "no tracing configured"
    with run_span("r1", countries=["AR"]):
        with node_span("r1", "analyze"):
            with chat_span("gpt-4o-mini", "openai", run_id="r1", node="analyze") as span:
                record_chat(span, response_model="gpt-4o-mini", input_tokens=10,
                            output_tokens=3, finish_reasons=["stop"])
    setup.shutdown()
    print(setup.endpoint)
    """
)


def _emit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROPOSALS_"))}
    return subprocess.run(
        [sys.executable, "-c", _EMIT],
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_otlp_env_exports_run_node_call_spans_with_parents() -> None:
    with OTLPReceiver() as rx:
        done = _emit({"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url, "OTEL_SERVICE_NAME": "svc-x"})
        assert done.returncode == 0, done.stderr
        spans = {s.name: s for s in rx.wait_for(lambda s: len(s) >= 3)}
    assert rx.requests[0].path == "/v1/traces"
    run, node, chat = (
        spans["invoke_workflow proposals"],
        spans["invoke_agent analyze"],
        spans["chat gpt-4o-mini"],
    )
    assert run.parent_span_id == ""
    assert node.parent_span_id == run.span_id
    assert chat.parent_span_id == node.span_id
    assert chat.trace_id == run.trace_id
    assert chat.kind == 3  # SPAN_KIND_CLIENT
    assert chat.service == "svc-x"
    assert chat.attributes[ATTR.OPERATION] == "chat"
    assert chat.attributes[ATTR.PROVIDER] == "openai"
    assert chat.attributes[ATTR.INPUT_TOKENS] == 10
    assert chat.attributes[ATTR.FINISH_REASONS] == ["stop"]
    assert run.attributes[ATTR.RUN_ID] == "r1"


def test_langfuse_settings_map_to_its_otlp_route_with_basic_auth() -> None:
    with OTLPReceiver() as rx:
        done = _emit(
            {
                "PROPOSALS_LANGFUSE_HOST": rx.url + "/",
                "PROPOSALS_LANGFUSE_PUBLIC_KEY": "pk-lf-1",
                "PROPOSALS_LANGFUSE_SECRET_KEY": "sk-lf-2",
            }
        )
        assert done.returncode == 0, done.stderr
        rx.wait_for(lambda s: len(s) >= 3)
    req = rx.requests[0]
    assert req.path == "/api/public/otel/v1/traces"
    # base64("pk-lf-1:sk-lf-2")
    assert req.headers["authorization"] == "Basic cGstbGYtMTpzay1sZi0y"


def test_tracing_stays_off_without_an_endpoint() -> None:
    assert setup_tracing(Settings(), environ={}) is None


def test_half_configured_langfuse_or_grpc_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="PROPOSALS_LANGFUSE_SECRET_KEY"):
        setup_tracing(Settings(langfuse_host="http://127.0.0.1:9", langfuse_public_key="pk"))
    with pytest.raises(ConfigError, match="http/protobuf"):
        setup_tracing(
            Settings(),
            environ={
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
        )


def test_price_overrides_from_file_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "my-model: {input_per_1m: 1.0, output_per_1m: 2.0}\ngpt-4o-mini:\n"
        "  input_per_1m: 0.2\n  output_per_1m: 0.8\n"
    )
    settings = Settings(
        prices_file=path, prices={"gpt-4o-mini": {"input_per_1m": 0.3, "output_per_1m": 0.9}}
    )
    table = PriceTable(GatewayConfig.from_settings(settings).prices)
    assert table.lookup("my-model") == (ModelPrice(input_per_1m=1.0, output_per_1m=2.0), None)
    # the inline setting wins over the file
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(1.2)
    json_path = tmp_path / "p.json"
    json_path.write_text(json.dumps({"x": {"input_per_1m": 1, "output_per_1m": 1}}))
    assert set(load_prices(json_path)) == {"x"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": {"input_per_1m": -1, "output_per_1m": 1}}))
    with pytest.raises(ConfigError, match=r"bad.json: model 'x', input_per_1m"):
        load_prices(bad)
    with pytest.raises(ConfigError, match="cannot read the price file"):
        load_prices(tmp_path / "missing.json")


def test_timeline_folds_call_events_and_draws_every_node(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    b = TimelineBuilder("r9")

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    b.add(at=at(0), phase="started", node="analyze", call_id=1)
    b.add(at=at(1), phase="finished", node="analyze", call_id=1, prompt_tokens=100)
    for i in range(3):
        b.add(at=at(1 + i * 0.1), phase="started", node="regulation", call_id=10 + i)
    b.add(at=at(1.5), phase="retry", node="regulation", call_id=11)
    b.add(at=at(2), phase="finished", node="regulation", call_id=10, cached=True)
    b.add(at=at(2.5), phase="failed", node="regulation", call_id=11)
    b.add(at=at(3), phase="finished", node="regulation", call_id=12, completion_tokens=5)
    tl = b.build()
    assert [c.outcome for c in tl.calls] == ["ok", "cached", "failed", "ok"]
    assert tl.calls[2].retries == 1
    assert max(n for _, n in tl.in_flight("regulation")) == 3
    assert tl.in_flight()[-1] == (3.0, 0)
    out = tmp_path / "t.png"
    drawn = draw_timeline(tl, out)
    assert drawn == ["analyze", "regulation"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
