"""Ways to run the simulator: in this event loop, in a thread, in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from ..errors import ProviderError
from ._profiles import SimulatorProfile, get_profile
from ._server import Simulator

__all__ = ["SimulatorProcess", "banner", "run_simulator", "serve_forever", "serve_in_thread"]

_URL_LINE = re.compile(r"(http://\S+/v1)\b")


def banner(sim: Simulator) -> list[str]:
    """The lines announcing a running simulator; the first carries its base URL."""
    p = sim.profile
    limits = (
        f"connections={p.max_connections or 'unlimited'} rpm={p.rpm or 'unlimited'} "
        f"tpm={p.tpm or 'unlimited'} context_window={p.context_window} "
        f"time_scale={p.time_scale}"
    )
    return [
        f"simulator base URL: {sim.base_url}",
        "This is a SIMULATOR: every answer is simulated text built from the prompt, "
        "not the output of a language model.",
        f"profile {p.name} (seed {sim.seed}): {limits}",
    ]


@contextlib.asynccontextmanager
async def run_simulator(
    profile: str | SimulatorProfile = "tier1",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
    **overrides: Any,
) -> AsyncIterator[Simulator]:
    """Run a simulator in the current event loop for the duration of the ``async with``.

    ``overrides`` replace profile fields, e.g. ``rpm=600, max_connections=50, fault_500=0.1``.
    """
    sim = Simulator(get_profile(profile, **overrides), host=host, port=port, seed=seed)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def serve_forever(
    profile: str | SimulatorProfile = "tier1",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
    announce: Callable[[str], None] = print,
    **overrides: Any,
) -> None:
    """Run a simulator until cancelled (Ctrl-C), announcing its URL through ``announce``."""
    async with run_simulator(profile, host=host, port=port, seed=seed, **overrides) as sim:
        for line in banner(sim):
            announce(line)
        await asyncio.Event().wait()


class _ThreadHandle:
    """A simulator served by a background thread's event loop."""

    def __init__(self, sim: Simulator, loop: asyncio.AbstractEventLoop) -> None:
        self.simulator = sim
        self.profile = sim.profile
        self.base_url = sim.base_url
        self.port = sim.port
        self._loop = loop

    def stats(self) -> dict[str, Any]:
        """Counters, read inside the simulator's own loop."""

        async def read() -> dict[str, Any]:
            return self.simulator.stats()

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(10)


@contextlib.contextmanager
def serve_in_thread(
    profile: str | SimulatorProfile = "unlimited", *, seed: int = 0, **overrides: Any
) -> Iterator[_ThreadHandle]:
    """Run a simulator in a daemon thread with its own event loop (for synchronous code)."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            async with run_simulator(profile, seed=seed, **overrides) as sim:
                box["handle"] = _ThreadHandle(sim, asyncio.get_running_loop())
                ready.set()
                await stop.wait()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise

    thread = threading.Thread(
        target=asyncio.run, args=(main(),), daemon=True, name="proposals-simulator"
    )
    thread.start()
    ready.wait(30)
    if "handle" not in box:
        raise ProviderError(f"simulator thread did not start: {box.get('error')!r}")
    handle: _ThreadHandle = box["handle"]
    try:
        yield handle
    finally:
        handle._loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)


class SimulatorProcess:
    """A simulator in a child process (``python -m proposals.simulator``), for benchmarks
    where the server must not share the client's CPU time or event loop.

    Use as ``with`` or ``async with``; it waits until ``/sim/stats`` answers and terminates
    the child on exit.
    """

    def __init__(
        self,
        profile: str = "tier1",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        startup_timeout_s: float = 30.0,
        **overrides: Any,
    ) -> None:
        self.profile: SimulatorProfile = get_profile(profile, **overrides)  # validates early
        self._args = [
            sys.executable,
            "-m",
            "proposals.simulator",
            "--profile",
            profile,
            "--host",
            host,
            "--port",
            str(port),
            "--seed",
            str(seed),
        ]
        if overrides:
            self._args += ["--overrides", json.dumps(overrides)]
        self._timeout = startup_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.port = 0

    def start(self) -> None:
        """Start the child and wait until it serves."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + self._timeout
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # first banner line, printed once listening
        match = _URL_LINE.search(line)
        if match is None:
            self.stop()
            raise ProviderError(f"simulator process did not start (said {line!r})")
        self.base_url = match.group(1)
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])
        # Drain the rest of stdout so the child never blocks on a full pipe.
        threading.Thread(target=self._proc.stdout.read, daemon=True).start()
        while True:
            try:
                self.stats()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise ProviderError("simulator process did not answer /sim/stats") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def _root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        """``GET /sim/stats`` of the child."""
        response = httpx.get(self._root() + "/sim/stats", timeout=5)
        response.raise_for_status()
        return response.json()

    def reset(self) -> dict[str, Any]:
        """``POST /sim/reset``: zero the counters and refill the rate buckets."""
        response = httpx.post(self._root() + "/sim/reset", timeout=5)
        response.raise_for_status()
        return response.json()

    async def astats(self) -> dict[str, Any]:
        """``GET /sim/stats`` without blocking the event loop."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self._root() + "/sim/stats")
            response.raise_for_status()
            return response.json()

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatorProcess:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
