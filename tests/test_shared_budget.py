"""One provider budget shared by three real processes through PostgreSQL leases, against the
simulator in a child process (profile ``shared-quota``: a 24-connection cap and 600 RPM, at
time scale 0.25): after the first cut episode no connection is refused and the processes
together never hold more connections than the cap; no call fails; a process killed with
SIGKILL loses its share once its lease expires, and the survivors take it over. The OpenAI
embedder opened in the shared budget takes a lease of its own, or shares the lease of the
process's gateway to the same endpoint."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proposals.config import Settings
from proposals.db import Database
from proposals.simulator import SimulatorProcess

pytestmark = pytest.mark.slow

LOAD = Path(__file__).resolve().parent / "_share_load.py"
LEASE_S = 3.0


def _wait(what: str, check: Callable[[], Any], deadline_s: float = 120.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail loudly at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess("shared-quota", time_scale=0.25) as sim:
        yield sim


def _sim(sim: SimulatorProcess, path: str, method: str = "GET") -> dict[str, Any]:
    root = sim.base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(root + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.load(response))


def _migrate(url: str, data_dir: Path) -> None:
    async def run() -> None:
        settings = Settings(data_dir=data_dir, database_url=url)
        async with await Database.open(settings):
            pass

    asyncio.run(run())


def test_three_processes_share_one_budget(
    database_url: str, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    url = database_url
    _migrate(url, tmp_path / "data")

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()

    procs = [
        subprocess.Popen(
            [sys.executable, str(LOAD), url, simulator.base_url, "--lease", str(LEASE_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        _wait("three leases", lambda: len(rows("SELECT 1 FROM provider_shares")) == 3)
        _wait(
            "the first cut",
            lambda: rows("SELECT generation FROM provider_budgets")[0][0] >= 1,
        )

        # The first episode ends when refusals stop coming (calls admitted before the cut
        # drain); from then on, none.
        def quiet() -> bool:
            before = _sim(simulator, "/sim/stats")["rejects"]["connection_refused"]
            time.sleep(2.0)
            return _sim(simulator, "/sim/stats")["rejects"]["connection_refused"] == before

        _wait("the first episode to end", quiet)
        _sim(simulator, "/sim/reset", "POST")
        stats = _wait(
            "300 calls after the first episode",
            lambda: (s := _sim(simulator, "/sim/stats"))["completed"] >= 300 and s,
        )
        assert stats["rejects"]["connection_refused"] == 0, stats
        assert stats["peak_connections"] <= 24, stats

        # SIGKILL one: its lease expires and the survivors take its slots.
        holders = rows("SELECT holder, slots FROM provider_shares ORDER BY holder")
        victim = next(h for h, _ in holders if h.split(":")[1] == str(procs[0].pid))
        survivors_before = sum(s for h, s in holders if h != victim)
        procs[0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _wait(
            "the dead process's lease to go",
            lambda: victim not in {h for (h,) in rows("SELECT holder FROM provider_shares")},
        )
        _wait(
            "the survivors to take its share",
            lambda: sum(s for (s,) in rows("SELECT slots FROM provider_shares")) > survivors_before,
        )
        freed_after = time.monotonic() - killed_at
        print(f"share freed {freed_after:.1f}s after SIGKILL (lease {LEASE_S}s)")
        _wait(
            "the survivors to split the rates in two",
            lambda: (
                sorted(round(f, 6) for (f,) in rows("SELECT fraction FROM provider_shares"))
                == [0.5, 0.5]
            ),
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=30) for proc in procs]
    for out, err in outputs[1:]:
        last = json.loads(out.strip().splitlines()[-1])
        assert last["ok"] > 0 and last["failed"] == 0, err[-2000:]


async def test_open_embedder_takes_a_lease_or_shares_the_gateways(
    settings: Settings, database: Database
) -> None:
    from _embedding_server import remote_settings
    from proposals.embeddings import open_embedder
    from proposals.llm import GatewayConfig, LLMGateway, SharedBudget, share_settings
    from proposals.simulator import run_simulator

    async def leases() -> list[tuple[Any, ...]]:
        async with database.pool.connection() as conn:
            cur = await conn.execute("SELECT endpoint, holder FROM provider_shares")
            return await cur.fetchall()

    async with run_simulator("unlimited") as sim:
        remote = remote_settings(settings, sim.base_url, "sim-embedding", shared_budget=True)
        # Alone: a gateway of its own, with a lease on the endpoint, deleted on exit.
        async with open_embedder(remote, database=database) as embedder:
            vectors = await embedder.embed(["household savings", "crop insurance"])
            assert vectors.shape == (2, 256)
            assert [row[0] for row in await leases()] == [sim.base_url.rstrip("/")]
        assert await leases() == []
        # Beside the process's gateway to the same endpoint: its lease, no second one.
        config = GatewayConfig.from_settings(remote, simulated=True)
        shared = SharedBudget(database, share_settings(config))
        async with LLMGateway(config, shared=shared) as gateway:
            async with open_embedder(remote, database=database, gateway=gateway) as embedder:
                await embedder.embed(["household savings"])
                assert [row[1] for row in await leases()] == [shared.holder]
            assert gateway.stats().http_requests == 1
        # Without the shared budget: the embedder's own client, no lease.
        plain = remote.model_copy(update={"shared_budget": False})
        async with open_embedder(plain, database=database) as embedder:
            await embedder.embed(["household savings"])
            assert await leases() == []
        assert sim.stats()["embeddings"] == 3
