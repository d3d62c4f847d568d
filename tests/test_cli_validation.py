"""Every user mistake in a ``generate`` command line is one line, before anything is spent
(issue 8, item 2): nothing is started (no database, no simulator, no LLM call)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proposals.cli import main

PROFILE = ["--profile", "young savers: 18-30, smartphone-first"]


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    data = tmp_path / "data"
    code = main(["--data-dir", str(data), "generate", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert not data.exists(), "something was started before the input was checked"
    return lines[0]


@pytest.mark.parametrize("countries", ["XX", "AR,XX", "usa"])
def test_unknown_country_codes(
    countries: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(tmp_path, capsys, "--brief", "savings", "--countries", countries, *PROFILE)
    assert "--countries" in line
    bad = countries.split(",")[-1]
    assert repr(bad) in line and "ISO 3166-1" in line


def test_option_out_of_range_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run(
        tmp_path, capsys, "--brief", "savings", "--countries", "AR", *PROFILE, "--themes", "0"
    )
    assert "--themes" in line and "greater than or equal to 1" in line


def test_profile_without_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _run(
        tmp_path, capsys, "--brief", "savings", "--countries", "AR", "--profile", ": desc only"
    )
    assert "--profile" in line and "needs a name" in line


def test_profiles_file_entry_without_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("- description: no name here\n", encoding="utf-8")
    line = _run(
        tmp_path, capsys, "--brief", "savings", "--countries", "AR", "--profiles", str(profiles)
    )
    assert str(profiles) in line and "name: is required" in line


def test_output_paths_are_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--brief", "savings", "--countries", "AR", *PROFILE]
    folder = tmp_path / "reports"
    folder.mkdir()
    assert "is a folder" in _run(tmp_path, capsys, *base, "--out", str(folder))
    missing = tmp_path / "nowhere" / "deeper" / "r.md"
    line = _run(tmp_path, capsys, *base, "--out", str(missing))
    assert "does not exist" in line and not missing.parent.exists()
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x", encoding="utf-8")
    line = _run(tmp_path, capsys, *base, "--json", str(a_file / "r.json"))
    assert line.startswith("error: --json") and "does not exist" in line
    same = tmp_path / "same"
    line = _run(tmp_path, capsys, *base, "--out", str(same), "--json", str(same))
    assert "same file" in line


def test_demo_out_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "out"
    a_file.write_text("x", encoding="utf-8")
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "demo", "--out-dir", str(a_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out-dir {a_file}: is a file, not a folder"]
    assert not data.exists()


def _many_profiles(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "".join(f"- name: segment {i}\n  description: households of kind {i}\n" for i in range(n)),
        encoding="utf-8",
    )
    return path


def test_a_very_large_run_is_refused_with_its_figure_without_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = _many_profiles(tmp_path, 200)
    argv = ["--brief", "savings", "--countries", "AR", "--profiles", str(profiles)]
    line = _run(tmp_path, capsys, *argv)
    assert "7,200 lens items (9 themes x 200 country-profile pairs x 4 lenses)" in line
    assert "LLM calls" in line and "M tokens" in line and "--yes" in line


def test_yes_lets_a_large_run_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: getting as far as the database proves the run was started.
    monkeypatch.setenv("PROPOSALS_DATABASE_URL", "postgresql://u@127.0.0.1:1/none")
    profiles = _many_profiles(tmp_path, 200)
    argv = ["generate", "--brief", "savings", "--countries", "AR", "--profiles", str(profiles)]
    assert main([*argv, "--yes"]) == 1
    err = capsys.readouterr().err
    assert "plan: 7,200 lens items" in err and "started with --yes" in err
    assert "cannot connect to PostgreSQL" in err
