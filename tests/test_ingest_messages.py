"""What ``ingest`` tells a new user (issue 8, items 3 and 7): folders with nothing to ingest,
front matter ``type:``, a size limit, and plain progress lines when not on a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _embedder import HashEmbedder
from proposals.cli import main
from proposals.db import Database
from proposals.ingest import ingest
from proposals.store import Store

TEXT = "Household savings accounts grew in rural areas. Agents opened most of them.\n"


def _cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not data.exists(), "nothing should be started for a folder with nothing to ingest"
    return lines[0]


def test_folder_with_only_unsupported_files_names_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "table.xlsx").write_bytes(b"PK\x03\x04")
    (folder / "slides.pptx").write_bytes(b"PK\x03\x04")
    line = _cli_error(tmp_path, capsys, "ingest", str(folder))
    assert "nothing to ingest" in line and "2 file(s) skipped" in line
    assert "table.xlsx (unsupported type '.xlsx')" in line and "slides.pptx" in line
    assert "Supported:" in line and ".pdf" in line


def test_empty_folder_says_nothing_was_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    line = _cli_error(tmp_path, capsys, "ingest", str(folder))
    assert line == f"error: nothing to ingest: no files found in {folder}"


async def test_front_matter_type_is_the_document_type(database: Database, tmp_path: Path) -> None:
    good = tmp_path / "report.md"
    good.write_text(f"---\ntitle: Field report\ntype: technical_report\n---\n{TEXT}", "utf-8")
    bad = tmp_path / "post.md"
    bad.write_text(f"---\ntitle: A post\ntype: article\n---\n{TEXT}", "utf-8")
    report = await ingest([good, bad], database=database, embedder=HashEmbedder())
    docs = {d.title: d for d in await Store(database).list_documents()}
    assert docs["Field report"].doc_type == "technical_report"
    [failure] = report.failed
    assert failure.path.endswith("post.md")
    assert "metadata key 'type'" in failure.reason and "technical_report" in failure.reason


async def test_files_over_the_size_limit_are_refused_unread(
    database: Database, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_text(TEXT * 200, "utf-8")
    small = tmp_path / "small.txt"
    small.write_text(TEXT, "utf-8")
    report = await ingest(
        [big, small], database=database, embedder=HashEmbedder(), max_file_mb=0.01
    )
    [failure] = report.failed
    assert failure.path == str(big)
    assert "over the 0.01 MB limit (PROPOSALS_MAX_FILE_MB)" in failure.reason
    assert len(report.added) == 1


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("a.md", "b.md"):
        (folder / name).write_text(f"# {name}\n\n{TEXT}", "utf-8")
    env = {**os.environ, "PROPOSALS_DATABASE_URL": database_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "proposals",
            "--data-dir",
            str(tmp_path / "d"),
            "ingest",
            str(folder),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("ingest [")]
    assert lines == [
        f"ingest [1/2] added {folder / 'a.md'}, 1 chunks",
        f"ingest [2/2] added {folder / 'b.md'}, 1 chunks",
    ]
