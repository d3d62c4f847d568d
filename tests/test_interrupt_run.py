"""Ctrl-C and kill -9 during ``generate`` (issue 8, items 4 and 5), with real subprocesses,
real signals and the simulator at a provider's real latency (so calls are in flight)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _embedder import local_embedder
from proposals.db import Database
from proposals.ingest import ingest

TEXT = (
    "Household savings accounts in Argentina grew among young urban workers last year. "
    "Mobile wallets now reach most of them, and agents serve rural families. "
    "Regulators require clear disclosure of fees on every retail savings product.\n\n"
)


@pytest.fixture
async def corpus_url(database: Database, tmp_path: Path) -> str:
    """A database holding three small AR documents (embedded by the CLI's local model)."""
    folder = tmp_path / "corpus" / "AR" / "official"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"doc{i}.md").write_text(f"# Rules {i}\n\n{TEXT * 4}", "utf-8")
    report = await ingest([tmp_path / "corpus"], database=database, embedder=local_embedder())
    assert not report.failed
    return database.url


def _env(url: str, time_scale: str) -> dict[str, str]:
    return {
        **os.environ,
        "PROPOSALS_DATABASE_URL": url,
        "PROPOSALS_SIMULATOR_TIME_SCALE": time_scale,
        # On SIGABRT (sent by ``_wait_for`` when a child seems stuck) print every thread's stack.
        "PYTHONFAULTHANDLER": "1",
    }


def _cli(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "proposals", "--data-dir", str(tmp_path / "d"), *args]


def _start_generate(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    argv = _cli(
        tmp_path,
        "generate",
        "--brief",
        "savings for households",
        "--countries",
        "AR",
        "--profile",
        "young savers: urban, mobile-first",
        "--themes",
        "3",
        "--json",
        str(tmp_path / "result.json"),
    )
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(url, "1.0"),
    )


def _wait_for(proc: subprocess.Popen[str], needle: str, *, patience_s: float = 240.0) -> list[str]:
    """stderr lines up to the one containing ``needle``. A child that has not printed it after
    ``patience_s`` (minutes more than it takes on a loaded machine) is aborted, so that the
    failure shows where it was stuck (faulthandler's stacks) instead of a bare timeout."""
    assert proc.stderr is not None
    lines: list[str] = []
    abort = threading.Timer(
        patience_s, lambda: proc.poll() is None and proc.send_signal(signal.SIGABRT)
    )
    abort.start()
    try:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if needle in line:
                return lines
    finally:
        abort.cancel()
    raise AssertionError(f"never printed {needle!r}; stderr was:\n" + "\n".join(lines))


def _run_id(lines: list[str]) -> str:
    return next(line.split()[-1] for line in lines if line.startswith("run id:"))


def _runs(tmp_path: Path, url: str) -> list[dict[str, object]]:
    done = subprocess.run(
        _cli(tmp_path, "runs", "--json"),
        capture_output=True,
        text=True,
        env=_env(url, "0.02"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_ctrl_c_stops_generate_records_it_and_says_how_to_resume(
    corpus_url: str, tmp_path: Path
) -> None:
    url = corpus_url
    proc = _start_generate(tmp_path, url)
    lines = _wait_for(proc, "analyze: started")
    run_id = _run_id(lines)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert f"--resume {run_id}" in rest
    assert "Traceback" not in rest
    [run] = _runs(tmp_path, url)
    assert run["id"] == run_id and run["status"] == "interrupted"
    # ... and it resumes to the end.
    resumed = subprocess.run(
        _cli(
            tmp_path,
            "generate",
            "--resume",
            run_id,
            "--quiet",
            "--json",
            str(tmp_path / "result.json"),
        ),
        capture_output=True,
        text=True,
        env=_env(url, "0.02"),
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    [run] = _runs(tmp_path, url)
    assert run["status"] == "completed"


def test_a_killed_run_is_shown_interrupted_not_running(corpus_url: str, tmp_path: Path) -> None:
    url = corpus_url
    proc = _start_generate(tmp_path, url)
    run_id = _run_id(_wait_for(proc, "analyze: started"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # Its lease (30 s) runs out with nobody to renew it: from then on it shows interrupted.
    deadline = time.monotonic() + 180
    while True:
        [run] = _runs(tmp_path, url)
        assert run["id"] == run_id
        if run["status"] == "interrupted":
            break
        assert run["status"] == "running", run
        assert time.monotonic() < deadline, "a killed run still shows running after 180 s"
        time.sleep(2)
    assert run["stale"] is True
