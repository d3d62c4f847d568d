"""Running one side of a before/after benchmark: a commit's ``src`` extracted from git, and a
child process whose ``PYTHONPATH`` selects the code, answering one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "extract_src", "run_child"]

ROOT = Path(__file__).resolve().parent.parent


def extract_src(commit: str, dest: Path) -> Path:
    """The ``src`` folder of ``commit``, extracted under ``dest``; returns its path."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def run_child(script: str, src: Path, *args: str | Path) -> dict[str, Any]:
    """Run ``bench/<script>`` with ``src`` first on the path (offline, no database URL: each
    side starts its own embedded PostgreSQL); the last line of its output, as JSON."""
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    env.pop("PROPOSALS_DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed ({src}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
