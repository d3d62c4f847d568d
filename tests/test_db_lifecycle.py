"""The embedded PostgreSQL's lifecycle (issue 8, item 6), with real processes and signals:
the last live user stops it, a killed user is dropped from its users, ``db status`` and
``db stop`` exist."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

HOLDER = """
import asyncio, sys
from proposals.config import Settings
from proposals.db import Database

async def main():
    db = await Database.open(Settings(data_dir=sys.argv[1]))
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proposals", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _status(data: Path) -> dict[str, object]:
    done = _cli(data, "db", "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _holder(data: Path) -> subprocess.Popen[str]:
    """A process using the database until killed; returns once it said it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def test_last_live_user_stops_the_server_and_dead_users_do_not_count(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _status(data)["running"] is False

    holder = _holder(data)
    try:
        status = _status(data)
        assert status["running"] is True and status["users"] == [holder.pid]
        refused = _cli(data, "db", "stop")
        assert refused.returncode == 2
        assert f"in use by process {holder.pid}" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        _kill9(holder)

    # The killed process left the server running and its pid on the list of users.
    status = _status(data)
    assert status["running"] is True
    assert status["users"] == [] and status["dropped_dead_users"] == [holder.pid]

    # A command that uses the server and exits is its last live user: it stops it.
    docs = _cli(data, "docs")
    assert docs.returncode == 0, docs.stderr
    assert _status(data)["running"] is False


def test_db_stop_after_a_killed_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _kill9(_holder(data))
    stopped = _cli(data, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the embedded PostgreSQL" in stopped.stdout
    assert _status(data)["running"] is False
    again = _cli(data, "db", "stop")
    assert again.returncode == 0 and "is not running" in again.stdout
    human = _cli(data, "db", "status")
    assert human.stdout.startswith("stopped: embedded PostgreSQL in")


def test_db_stop_force_while_in_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = _holder(data)
    try:
        forced = _cli(data, "db", "stop", "--force")
        assert forced.returncode == 0, forced.stderr
        assert _status(data)["running"] is False
    finally:
        _kill9(holder)
