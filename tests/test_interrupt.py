"""Ctrl-C (issue 8, item 4), with real subprocesses and real SIGINTs: the first stops the
command promptly and says how to continue; the second exits at once; nothing half-stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

WORDS = [
    "household",
    "savings",
    "agents",
    "remittances",
    "insurance",
    "rural",
    "urban",
    "credit",
    "mobile",
    "wallet",
]


def _corpus(folder: Path, files: int) -> Path:
    folder.mkdir()
    for i in range(files):
        body = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(500))
        (folder / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n{body}.\n", "utf-8")
    return folder


def _start_ingest(tmp_path: Path, database_url: str, folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PROPOSALS_DATABASE_URL": database_url}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proposals",
            "--data-dir",
            str(tmp_path / "d"),
            "ingest",
            str(folder),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_line(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    """stderr lines up to and including the first starting with ``prefix``."""
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"never printed {prefix!r}; stderr was:\n" + "\n".join(lines))


def _stored(database_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT d.path, count(c.id) FROM documents d LEFT JOIN chunks c"
            " ON c.document_id = d.id GROUP BY d.path"
        ).fetchall()


def test_first_ctrl_c_stops_ingest_and_says_how_to_continue(
    tmp_path: Path, database_url: str
) -> None:
    folder = _corpus(tmp_path / "corpus", 300)
    proc = _start_ingest(tmp_path, database_url, folder)
    _wait_for_line(proc, "ingest [3/300]")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert "interrupted: stopping" in rest
    assert "ingest interrupted after" in rest and "of 300 files" in rest
    assert "Traceback" not in rest
    stored = _stored(database_url)
    assert 3 <= len(stored) < 300, "it went on ingesting after Ctrl-C"
    assert all(chunks > 0 for _, chunks in stored), "a document was stored half"


def test_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path: Path, database_url: str) -> None:
    folder = _corpus(tmp_path / "corpus", 300)
    proc = _start_ingest(tmp_path, database_url, folder)
    _wait_for_line(proc, "ingest [2/300]")
    proc.send_signal(signal.SIGINT)
    _wait_for_line(proc, "interrupted: stopping")
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in rest and "threading" not in rest
    assert len(_stored(database_url)) < 300
