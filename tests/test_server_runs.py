"""Runs over HTTP against a real uvicorn on loopback, embedded PostgreSQL and the simulator:
create (202 + Location), read, list, cancel, proposals as JSON and Markdown; the SSE stream
dropped and resumed with Last-Event-ID, the WebSocket dropped and resumed with ``after``,
each delivering every event exactly once in order; heartbeats on an idle stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from _server import LiveServer, serve_in_thread
from proposals.client import ProposalsClient
from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.pipeline import Profile, ProposalRequest, RunOptions
from proposals.runs import RunFinished, parse_event
from proposals.server import ServerOptions

DEADLINE_S = 180.0


def run_request(themes: int = 2) -> dict[str, Any]:
    return ProposalRequest(
        brief="savings products for households",
        countries=["AR"],
        profiles=[Profile(name="young savers", description="urban, smartphone-first")],
        options=RunOptions(themes=themes, proposals_per_pair=2),
    ).model_dump(mode="json")


@pytest.fixture
def live(corpus_settings: Settings, embedder: Embedder) -> Iterator[LiveServer]:
    options = ServerOptions(auth=False, workers=1, slots=2, heartbeat_s=1.0)
    with serve_in_thread(corpus_settings, options, embedder=embedder) as server:
        yield server


async def _stored_events(base: str, run_id: str) -> list[dict[str, Any]]:
    """The whole stored log of an ended run, read through the API in one go."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        response = await http.get(f"/v1/runs/{run_id}/events")
    frames = [f for f in response.text.split("\n\n") if f.startswith("id:")]
    return [json.loads(f.split("data: ", 1)[1]) for f in frames]


async def test_run_lifecycle(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        created = await http.post("/v1/runs", json=run_request())
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        assert created.headers["location"] == f"/v1/runs/{run_id}"
        assert created.json()["status"] in ("queued", "running")
        async with ProposalsClient(live.url) as client, asyncio.timeout(DEADLINE_S):
            finished = await client.wait(run_id)
        assert finished.status == "completed"
        record = (await http.get(f"/v1/runs/{run_id}")).json()
        assert record["status"] == "completed" and record["simulated"] is True
        assert record["provider"].startswith("simulator")
        assert record["usage"]["calls"] > 0 and record["progress"]
        listed = (await http.get("/v1/runs", params={"status": "completed"})).json()["runs"]
        assert [r["id"] for r in listed] == [run_id] and listed[0]["result"] is None
        result = (await http.get(f"/v1/runs/{run_id}/proposals")).json()
        assert result["run_id"] == run_id and result["proposals"]
        markdown = await http.get(
            f"/v1/runs/{run_id}/proposals", headers={"Accept": "text/markdown"}
        )
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert "SIMULATED" in markdown.text.upper()
        # an ended run's stream replays and closes; asking after its end gives nothing
        replay = await _stored_events(live.url, run_id)
        assert [e["seq"] for e in replay] == list(range(1, len(replay) + 1))
        tail = await http.get(f"/v1/runs/{run_id}/events", params={"after": len(replay)})
        assert "id:" not in tail.text
        assert (await http.get("/v1/runs/nope")).status_code == 404
        cancelled = await http.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.json()["status"] == "completed"  # an ended run stays as it was


async def test_sse_dropped_and_resumed_gets_every_event_once(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        run_id = (await http.post("/v1/runs", json=run_request(themes=3))).json()["id"]
        seen: list[int] = []
        last = 0
        drops = 0
        async with asyncio.timeout(DEADLINE_S):
            while True:
                headers = {"Last-Event-ID": str(last)} if last else {}
                ended = False
                async with http.stream(
                    "GET", f"/v1/runs/{run_id}/events", headers=headers
                ) as stream:
                    got = 0
                    async for line in stream.aiter_lines():
                        if line.startswith("data: "):
                            event = parse_event(line[6:])
                            seen.append(event.seq)
                            last = event.seq
                            got += 1
                            if isinstance(event, RunFinished):
                                ended = True
                            elif got == 7:  # drop the connection mid-run
                                drops += 1
                                break
                if ended:
                    break
    stored = [e["seq"] for e in await _stored_events(live.url, run_id)]
    assert drops >= 2
    assert seen == stored == list(range(1, len(stored) + 1))


async def test_websocket_dropped_and_resumed_gets_every_event_once(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        run_id = (await http.post("/v1/runs", json=run_request(themes=3))).json()["id"]
    ws_url = live.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/ws"
    seen: list[int] = []
    drops = 0
    async with asyncio.timeout(DEADLINE_S):
        while True:
            after = seen[-1] if seen else 0
            async with websockets.connect(f"{ws_url}?after={after}") as ws:
                got = 0
                ended = False
                async for frame in ws:
                    event = parse_event(frame)
                    seen.append(event.seq)
                    got += 1
                    if isinstance(event, RunFinished):
                        ended = True
                    elif got == 7:
                        drops += 1
                        break
                if ended:
                    # the server closes the socket after the terminal event
                    with pytest.raises(websockets.ConnectionClosedOK):
                        await ws.recv()
                    break
    stored = [e["seq"] for e in await _stored_events(live.url, run_id)]
    assert drops >= 2
    assert seen == stored == list(range(1, len(stored) + 1))


async def test_idle_stream_sends_heartbeats(corpus_settings: Settings, embedder: Embedder) -> None:
    """With no worker the run stays queued: its stream is idle but kept alive by comments."""
    options = ServerOptions(auth=False, workers=0, heartbeat_s=0.2)
    with serve_in_thread(corpus_settings, options, embedder=embedder) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            run_id = (await http.post("/v1/runs", json=run_request())).json()["id"]
            assert (await http.get(f"/v1/runs/{run_id}")).json()["status"] == "queued"
            beats = 0
            async with (
                asyncio.timeout(DEADLINE_S),
                http.stream("GET", f"/v1/runs/{run_id}/events") as stream,
            ):
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    assert not line.startswith("data:")
                    if line == ": heartbeat":
                        beats += 1
                        if beats == 3:
                            break
            cancelled = (await http.post(f"/v1/runs/{run_id}/cancel")).json()
            assert cancelled["status"] == "cancelled"
            events = await _stored_events(live.url, run_id)
            assert events[-1]["type"] == "run_finished" and events[-1]["status"] == "cancelled"


async def test_bad_run_bodies_are_422_naming_the_field(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        malformed = await http.post(
            "/v1/runs", content=b'{"brief": "x",', headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 422
        assert malformed.json()["detail"][0]["type"] == "json_invalid"
        body = run_request()
        body["countries"] = ["Atlantis"]
        bad_country = await http.post("/v1/runs", json=body)
        assert bad_country.status_code == 422
        assert bad_country.json()["detail"][0]["loc"][:2] == ["body", "countries"]
        body = run_request()
        body["options"]["themes"] = 0
        bad_option = (await http.post("/v1/runs", json=body)).json()["detail"][0]
        assert bad_option["loc"] == ["body", "options", "themes"] and bad_option["msg"]
        missing = (await http.post("/v1/runs", json={"countries": ["AR"]})).json()["detail"]
        assert ["body", "brief"] in [d["loc"] for d in missing]
        assert (await http.get("/v1/runs", params={"status": "sleeping"})).status_code == 422


async def test_runs_and_their_streams_are_isolated_by_tenant(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    from proposals.db import Database
    from proposals.keys import ApiKeys

    async with await Database.open(corpus_settings) as db:
        _, acme_key = await ApiKeys(db).create("acme")
        _, beta_key = await ApiKeys(db).create("beta")
    options = ServerOptions(workers=1, heartbeat_s=1.0)
    with serve_in_thread(corpus_settings, options, embedder=embedder) as live:
        acme = httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {acme_key}"}, timeout=60
        )
        beta = httpx.AsyncClient(
            base_url=live.url, headers={"Authorization": f"Bearer {beta_key}"}, timeout=60
        )
        anonymous = httpx.AsyncClient(base_url=live.url, timeout=60)
        async with acme, beta, anonymous:
            assert (await anonymous.post("/v1/runs", json=run_request())).status_code == 401
            run_id = (await acme.post("/v1/runs", json=run_request())).json()["id"]
            async with ProposalsClient(live.url, acme_key) as client, asyncio.timeout(DEADLINE_S):
                await client.wait(run_id)
            for method, path in (
                ("GET", f"/v1/runs/{run_id}"),
                ("GET", f"/v1/runs/{run_id}/events"),
                ("GET", f"/v1/runs/{run_id}/proposals"),
                ("POST", f"/v1/runs/{run_id}/cancel"),
            ):
                assert (await beta.request(method, path)).status_code == 404, path
                assert (await anonymous.request(method, path)).status_code == 401, path
                assert (await acme.request(method, path)).status_code == 200, path
            assert (await beta.get("/v1/runs")).json()["runs"] == []
            assert [r["id"] for r in (await acme.get("/v1/runs")).json()["runs"]] == [run_id]
        ws_url = live.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/ws"
        for query, code in (("", 4401), (f"?token={beta_key}", 4404), ("?token=pk_x", 4401)):
            async with websockets.connect(ws_url + query) as ws:
                with pytest.raises(websockets.ConnectionClosedError) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code, query
        async with websockets.connect(f"{ws_url}?token={acme_key}") as ws:
            frames = [parse_event(f) async for f in ws]
        assert isinstance(frames[-1], RunFinished) and frames[0].seq == 1
