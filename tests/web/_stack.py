"""The service as a user runs it, for the browser tests: ``proposals worker`` and
``proposals serve --workers 0 --no-auth`` as real subprocesses on loopback, sharing one
PostgreSQL database, with the simulator as the LLM (each worker starts its own).

The server can be stopped with a real signal and started again on the same port while the
worker goes on with the run, which is what the page must survive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

UPLOAD_LIMIT_MB = 4
"""The server's upload limit in these tests (small, so a test can exceed it cheaply)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One ``proposals`` sub-command in its own process group, output to a log file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.args = list(args)
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "proposals", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def send(self, sig: int) -> None:
        """Send ``sig`` (SIGSTOP freezes the process, SIGCONT lets it go on)."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` to the process and wait for it; SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


class Stack:
    """A server on ``127.0.0.1:<port>`` (and a worker, unless ``worker=False``) over one
    database."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        logs: Path,
        *,
        auth: bool = False,
        worker: bool = True,
    ) -> None:
        self.with_worker = worker
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROPOSALS_", "OPENAI_"))}
        env.update(
            PROPOSALS_DATABASE_URL=database_url,
            PROPOSALS_DATA_DIR=str(data_dir),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PROPOSALS_MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB),
        )
        logs.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.worker = Process(
            ["worker", "--slots", "4", "--lease", "60", "--heartbeat", "2"],
            env,
            logs / "worker.log",
        )
        self.server = Process(
            [
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "0",
                *([] if auth else ["--no-auth"]),
                "--log-level",
                "warning",
            ],
            env,
            logs / "server.log",
        )

    def start(self) -> None:
        if self.with_worker:
            self.worker.start()
        self.start_server()
        if self.with_worker and not self.worker.running:
            raise RuntimeError(f"the worker exited while starting:\n{self.worker.tail()}")

    def start_server(self, deadline_s: float = 180.0) -> None:
        """Start the server and wait until ``/readyz`` answers 200 (fails loudly otherwise)."""
        self.server.start()
        deadline = time.monotonic() + deadline_s
        while True:
            if not self.server.running:
                raise RuntimeError(f"the server exited while starting:\n{self.server.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server was not ready in {deadline_s:.0f} s:\n{self.server.tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.stop()
        self.worker.stop()

    def create_key(self, tenant: str) -> str:
        """``proposals keys create --tenant TENANT``: the key it prints once."""
        done = subprocess.run(
            [sys.executable, "-m", "proposals", "keys", "create", "--tenant", tenant],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A call to the server's API (the no-auth local tenant)."""
        response = httpx.request(method, f"{self.url}{path}", timeout=60, **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        return response


@contextlib.contextmanager
def running_stack(
    database_url: str, data_dir: Path, logs: Path, *, auth: bool = False, worker: bool = True
) -> Iterator[Stack]:
    stack = Stack(database_url, data_dir, logs, auth=auth, worker=worker)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
