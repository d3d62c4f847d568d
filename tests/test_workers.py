"""Workers as real processes: ``proposals worker`` subprocesses sharing the test database and
one simulator process over loopback, killed with real signals.

Nothing here sleeps and assumes: every wait polls rows, events or counters until a generous
deadline and fails loudly when it passes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.pipeline import Profile, ProposalRequest, ProposalResult, RunOptions
from proposals.runs import (
    RunEvent,
    RunFinished,
    RunManager,
    RunStarted,
    generate,
    open_services,
)
from proposals.simulator import SimulatorProcess

DEADLINE_S = 240.0


class WorkerProcess:
    """``python -m proposals worker`` in a child process; its output kept for the test."""

    def __init__(self, name: str, settings: Settings, simulator_url: str, slots: int) -> None:
        self.name = name
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PROPOSALS_", "OPENAI_", "AZURE_OPENAI_"))
        }
        env.update(
            PROPOSALS_DATABASE_URL=settings.database_url or "",
            PROPOSALS_DATA_DIR=str(settings.data_dir),
            PROPOSALS_SIMULATOR_URL=simulator_url,
            PROPOSALS_LLM_TIMEOUT_S="20",
            PYTHONUNBUFFERED="1",
        )
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "proposals", "worker", "--id", name),
                *("--slots", str(slots), "--lease", "3", "--heartbeat", "0.5"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(f"worker {self.name}:"):
                self._ready.set()
        self._ready.set()

    async def ready(self) -> None:
        # Loading torch and the embedding model takes long on a busy machine.
        ok = await asyncio.to_thread(self._ready.wait, 2 * DEADLINE_S)
        assert ok and self.proc.poll() is None, f"worker {self.name} did not start: {self.lines}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


async def _until(what: str, check: Any, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def _collect(it: AsyncIterator[RunEvent]) -> list[RunEvent]:
    async with asyncio.timeout(DEADLINE_S):
        return [e async for e in it]


def _signature(result: ProposalResult) -> list[tuple[Any, ...]]:
    return [
        (p.country, p.profile, p.rank, p.title, p.summary, tuple(c.chunk_id for c in p.citations))
        for p in result.proposals
    ]


async def _scalar(url: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode())
        row = await cur.fetchone() if cur.description else None
    return row[0] if row else None


async def test_kill_9_of_a_worker_mid_run_loses_nothing(
    corpus_settings: Settings, embedder: Embedder, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    url = corpus_settings.database_url
    assert url
    request = ProposalRequest(
        brief="savings and microinsurance products for households",
        countries=["AR", "BR"],
        profiles=[
            Profile(name="young savers", description="urban, smartphone-first"),
            Profile(name="rural families", description="seasonal income, agents"),
        ],
        options=RunOptions(themes=3, proposals_per_pair=2),
    )
    # Calls take ~0.2 s, so the run lasts long enough to be killed in the middle.
    async with SimulatorProcess("unlimited", ttft_s=1.0, time_scale=0.2) as sim:
        # The uninterrupted reference, in this process, against the same simulator.
        async with (
            open_services(corpus_settings, embedder=embedder, simulator_url=sim.base_url) as svc,
            generate(request, corpus_settings, services=svc) as run,
        ):
            reference = await run.result()
        reference_requests = (await sim.astats())["requests"]
        await _scalar(url, "TRUNCATE llm_cache, llm_usage")
        await asyncio.to_thread(sim.reset)

        first = WorkerProcess("A", corpus_settings, sim.base_url, slots=2)
        workers.append(first)
        await first.ready()
        async with await RunManager.open(corpus_settings) as observer:
            record = await observer.submit(request)
            follower = asyncio.create_task(_collect(observer.subscribe(record.id)))

            async def lenses_half_done() -> bool:
                done = await _scalar(
                    url,
                    f"SELECT count(*) FROM run_events WHERE run_id = '{record.id}'"
                    " AND type = 'batch_finished' AND data->>'node' IN ('market_fit', 'regulation')",
                )
                return bool(done >= 2)

            await _until("lens batches to finish on worker A", lenses_half_done, 0.02)
            first.kill()
            at_kill = (await sim.astats())["requests"]
            cached_at_kill = await _scalar(url, "SELECT count(*) FROM llm_cache")
            held = await observer.get(record.id)
            assert held is not None and held.status == "running" and held.worker_id == "A"

            second = WorkerProcess("B", corpus_settings, sim.base_url, slots=2)
            workers.append(second)
            await second.ready()
            events = await follower
            final = await observer.get(record.id)
            stored = await observer.log.read(record.id)
        total_requests = (await sim.astats())["requests"]
        rejects = (await sim.astats())["rejects"]

    print(
        f"kill -9 figures: reference {reference_requests} requests; at the kill "
        f"{at_kill} sent, {cached_at_kill} answered and cached; in all {total_requests} "
        f"requests ({total_requests - reference_requests} sent twice); {len(stored)} events"
    )
    assert final is not None and final.status == "completed" and final.result is not None
    assert final.worker_id == "B" and final.attempts == 2
    # the event log: no gap, no duplicate; the follower saw each stored event once, in order
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert [e.model_dump() for e in events] == [e.model_dump() for e in stored]
    starts = [e for e in stored if isinstance(e, RunStarted)]
    assert [(s.worker_id, s.attempt, s.resumed) for s in starts] == [
        ("A", 1, False),
        ("B", 2, True),
    ]
    assert [e.seq for e in stored if isinstance(e, RunFinished)] == [stored[-1].seq]
    # no finished call paid again: only those in flight at the kill were sent twice
    assert not any(rejects.values())
    assert 0 < cached_at_kill < at_kill <= reference_requests
    repeated = total_requests - reference_requests
    assert 0 <= repeated <= at_kill - cached_at_kill
    assert _signature(final.result) == _signature(reference)
    assert [t.title for t in final.result.themes] == [t.title for t in reference.themes]


async def test_twenty_runs_shared_by_two_workers_at_most_n_each(
    corpus_settings: Settings, workers: list[WorkerProcess]
) -> None:
    slots = 3
    async with SimulatorProcess("unlimited", ttft_s=1.0, time_scale=0.05) as sim:
        for name in ("A", "B"):
            workers.append(WorkerProcess(name, corpus_settings, sim.base_url, slots=slots))
            await workers[-1].ready()
        async with await RunManager.open(corpus_settings) as observer:
            requests = [
                ProposalRequest(
                    brief=f"savings products for households, variant {i}",
                    countries=["AR"],
                    profiles=[Profile(name="young savers", description="urban savers")],
                    options=RunOptions(themes=1, proposals_per_pair=1),
                )
                for i in range(20)
            ]
            records = await asyncio.gather(*(observer.submit(r) for r in requests))
            logs = await asyncio.gather(*(_collect(observer.subscribe(r.id)) for r in records))
            finals = [await observer.get(r.id) for r in records]
        codes = [w.stop() for w in workers]
    assert codes == [0, 0]
    assert all(f is not None and f.status == "completed" for f in finals)
    # from each run's own events: which worker ran it, from when to when
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for log in logs:
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        start, end = log[0], log[-1]
        assert isinstance(start, RunStarted) and isinstance(end, RunFinished)
        assert start.worker_id is not None
        spans[start.worker_id].append((start.at.timestamp(), end.at.timestamp()))
    assert set(spans) == {"A", "B"}
    for worker, intervals in spans.items():
        edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        assert peak <= slots, f"worker {worker} ran {peak} runs at once"
    # each worker's own count agrees
    for w in workers:
        said = [line for line in w.lines if "runs claimed, at most" in line]
        assert said, w.lines
        assert int(said[-1].split("at most ")[1].split()[0]) <= slots
