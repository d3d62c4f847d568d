"""Service benchmark: ``proposals serve --workers 0`` and ``proposals worker`` as separate
processes on one PostgreSQL (embedded), the simulator in a third process.

Three figures:

* **fan-out latency**: 100 SSE subscribers are connected to one run before a worker exists;
  then the worker process starts and executes it. For every event each subscriber receives,
  latency = time received - the event's ``at`` (stamped by the worker when it emitted the
  event; same host, same clock). That covers the worker's batched write to PostgreSQL, the
  NOTIFY, the server reading the rows and writing 100 streams, and the client parsing.
  Goal: p95 < 250 ms.
* **time to first event**: with the worker idle and waiting, ``POST /v1/runs`` then the first
  event on the run's SSE stream (median of ``FIRST_EVENT_RUNS`` runs, one after the other).
* **peak memory with 20 concurrent runs**: 20 runs created at once, each followed by one SSE
  subscriber, the worker holding 20 slots; peak RSS (``VmHWM``) of the server and the worker
  process, read after the runs (the peak over the whole benchmark: the 100-subscriber part
  ran in the same processes before).

The subscribers are raw asyncio sockets in this process (light, so 100 of them measure the
server more than the client); the machine has 2 shared cores, so server, worker, simulator,
PostgreSQL and the 100 clients compete for them. Writes ``bench/results/service.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from proposals.config import Settings
from proposals.db import Database
from proposals.embeddings import embedder_from_settings
from proposals.ingest import ingest
from proposals.simulator import SimulatorProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SUBSCRIBERS = 100
CONCURRENT_RUNS = 20
FIRST_EVENT_RUNS = 5
TIME_SCALE = 0.02


def _request(themes: int, countries: list[str]) -> dict[str, Any]:
    return {
        "brief": "savings, microinsurance and payment products for low-income households",
        "countries": countries,
        "profiles": [
            {"name": "young urban savers", "description": "smartphone-first, small surpluses"},
            {"name": "rural smallholder families", "description": "seasonal income, agents"},
        ],
        "options": {"themes": themes, "proposals_per_pair": 2},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proposals", *args], env=env, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Subscriber:
    """One SSE connection over a raw socket: records (seq, latency) of every event."""

    def __init__(self, port: int, run_id: str) -> None:
        self.port = port
        self.run_id = run_id
        self.latencies: list[float] = []
        self.seqs: list[int] = []
        self.connected = asyncio.Event()

    async def follow(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**24)
        writer.write(
            f"GET /v1/runs/{self.run_id}/events HTTP/1.1\r\nHost: bench\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"retry:"):
                    self.connected.set()
                elif line.startswith(b"data: "):
                    now = time.time()
                    event = json.loads(line[6:])
                    self.latencies.append(now - datetime.fromisoformat(event["at"]).timestamp())
                    self.seqs.append(event["seq"])
                    if event["type"] == "run_finished":
                        return
        finally:
            writer.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _first_event_s(http: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    run_id = (await http.post("/v1/runs", json=_request(1, ["AR"]))).json()["id"]
    async with http.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                first = time.perf_counter() - started
                break
    async with http.stream("GET", f"/v1/runs/{run_id}/events?after=1") as stream:
        async for _ in stream.aiter_lines():
            pass  # until the run ends, so the next one starts on an idle worker
    return first


async def _measure(url: str, port: int, start_worker: Any, server_pid: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        # 1. fan-out: 100 subscribers on a run that waits for a worker
        run_id = (await http.post("/v1/runs", json=_request(3, ["AR", "BR"]))).json()["id"]
        subs = [Subscriber(port, run_id) for _ in range(SUBSCRIBERS)]
        async with asyncio.TaskGroup() as group:
            for sub in subs:
                group.create_task(sub.follow())
            await asyncio.gather(*(s.connected.wait() for s in subs))
            worker_pid = start_worker()
        latencies = [x for s in subs for x in s.latencies]
        complete = all(s.seqs == list(range(1, len(subs[0].seqs) + 1)) for s in subs)
        # 2. time from POST to first event, on an idle worker
        firsts = [await _first_event_s(http) for _ in range(FIRST_EVENT_RUNS)]
        # 3. 20 runs at once, one subscriber each
        started = time.perf_counter()
        ids = [
            (await http.post("/v1/runs", json=_request(2, ["AR", "MX"]))).json()["id"]
            for _ in range(CONCURRENT_RUNS)
        ]
        followers = [Subscriber(port, i) for i in ids]
        async with asyncio.TaskGroup() as group:
            for sub in followers:
                group.create_task(sub.follow())
        wall = time.perf_counter() - started
        statuses = [(await http.get(f"/v1/runs/{i}")).json()["status"] for i in ids]
    return {
        "fanout": {
            "subscribers": SUBSCRIBERS,
            "events_per_subscriber": len(subs[0].seqs),
            "deliveries": len(latencies),
            "every_subscriber_got_every_event_once_in_order": complete,
            "latency_ms_p50": round(_pct(latencies, 0.5) * 1000, 1),
            "latency_ms_p95": round(_pct(latencies, 0.95) * 1000, 1),
            "latency_ms_max": round(max(latencies) * 1000, 1),
            "goal_p95_under_250_ms": _pct(latencies, 0.95) < 0.25,
        },
        "first_event": {
            "runs": FIRST_EVENT_RUNS,
            "seconds_each": [round(x, 3) for x in firsts],
            "median_s": round(statistics.median(firsts), 3),
        },
        "concurrent_runs": {
            "runs": CONCURRENT_RUNS,
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
            "wall_s": round(wall, 1),
            "server_peak_rss_mib": round(_peak_rss_mib(server_pid), 1),
            "worker_peak_rss_mib": round(_peak_rss_mib(worker_pid), 1),
        },
    }


def main() -> int:
    import pgserver

    with tempfile.TemporaryDirectory(prefix="proposals-bench-service-") as tmp:
        base = Path(tmp)
        pg = pgserver.get_server(base / "pg", cleanup_mode="stop")
        pg.psql("CREATE DATABASE bench;")
        settings = Settings(data_dir=base / "data", database_url=pg.get_uri("bench"))

        async def load() -> int:
            async with await Database.open(settings) as db:
                report = await ingest(
                    [ROOT / "examples" / "corpus"],
                    database=db,
                    embedder=embedder_from_settings(settings),
                )
            return len(report.added)

        documents = asyncio.run(load())
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROPOSALS_")}
        env.update(
            PROPOSALS_DATABASE_URL=settings.database_url or "",
            PROPOSALS_DATA_DIR=str(settings.data_dir),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        with SimulatorProcess("tier1", time_scale=TIME_SCALE) as sim:
            env["PROPOSALS_SIMULATOR_URL"] = sim.base_url
            serve = ["serve", "--workers", "0", "--no-auth", "--port", str(port)]
            with (
                _process(serve, env, base / "server.log") as server,
                contextlib.ExitStack() as workers,
            ):
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 120
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                            break
                    if time.monotonic() > deadline or server.poll() is not None:
                        print((base / "server.log").read_text())
                        return 1
                    time.sleep(0.2)

                def start_worker() -> int:
                    args = ["worker", "--slots", str(CONCURRENT_RUNS)]
                    proc = workers.enter_context(_process(args, env, base / "worker.log"))
                    return proc.pid

                load_before = os.getloadavg()
                figures = asyncio.run(_measure(url, port, start_worker, server.pid))
                load_after = os.getloadavg()
    out = {
        "benchmark": "service",
        "simulated": True,
        "note": "Server (--workers 0), worker and simulator (tier1, time scale "
        f"{TIME_SCALE}) in separate processes on one embedded PostgreSQL; clients in the "
        f"bench process; {os.cpu_count()} shared CPUs. See bench/service.py.",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        },
        "corpus_documents": documents,
        **figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "service.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))
    ok = out["fanout"]["every_subscriber_got_every_event_once_in_order"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
