"""The README's Python example runs as written (against the test database and the simulator)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python example"
    return blocks[0]


async def test_readme_python_example_runs(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPOSALS_DATABASE_URL", database_url)
    monkeypatch.setenv("PROPOSALS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(README.parent)
    code = "async def _example():\n" + textwrap.indent(_python_example(), "    ")
    code += "\n    return report, hits, result\n"
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)
    report, hits, result = await namespace["_example"]()  # type: ignore[operator]
    assert not report.failed and len(report.added) > 40  # type: ignore[attr-defined]
    assert hits and all(h.citation.country in ("MX", None) for h in hits)  # type: ignore[attr-defined]
    assert result.proposals  # type: ignore[attr-defined]
    assert {p.country for p in result.proposals} == {"AR", "BR"}  # type: ignore[attr-defined]
