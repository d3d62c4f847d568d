"""Small things a new user meets first (issue 8, item 7): ``--version``, a ``--help`` that does
not load the heavy libraries, a description for every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proposals.cli import _COMMANDS, build_parser

HEAVY = ("torch", "sentence_transformers", "transformers", "langgraph", "langchain_core", "openai")
PROBE = """
import sys
from proposals.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY", ",".join(heavy))
"""


def _probe(*argv: str) -> tuple[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out, _, last = done.stdout.rstrip().rpartition("\n")
    assert last.startswith("HEAVY")
    return out, [m for m in last.removeprefix("HEAVY").strip().split(",") if m]


@pytest.mark.parametrize(
    "argv", [("--help",), ("docs", "--help"), ("search", "--help"), ("db", "--help")]
)
def test_help_loads_no_heavy_library(argv: tuple[str, ...]) -> None:
    out, heavy = _probe(*argv)
    assert "usage: proposals" in out
    assert heavy == []


def test_top_level_help_lists_every_command() -> None:
    out, _ = _probe("--help")
    for command, (_, help_text) in _COMMANDS.items():
        assert command in out and help_text[:30] in " ".join(out.split())


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proposals", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("proposals ") and done.stdout.split()[1][0].isdigit()


def test_every_command_has_a_description_and_the_index_matches() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {action.dest: action.help for action in sub._choices_actions}
    assert set(sub.choices) == set(_COMMANDS)
    for command, (_, help_text) in _COMMANDS.items():
        assert helps[command] == help_text, command
        assert sub.choices[command].description, f"{command} has no description"


def test_package_functions_stay_functions() -> None:
    import proposals
    import proposals.ingest  # binds the subpackage on the package: the name stays the function

    assert callable(proposals.ingest) and proposals.ingest.__name__ == "ingest"
    assert proposals.search.__name__ == "search" and proposals.generate.__name__ == "generate"


def test_demo_parses_every_option_the_shared_executor_reads() -> None:
    # `demo` and `generate` share one executor; it reads --resume/--rerun, which only
    # `generate` defines (the demo crashed with AttributeError before they had defaults).
    args = build_parser(["demo"]).parse_args(["demo"])
    assert args.resume is None and args.rerun is None
    assert args.no_cache is False and args.quiet is False
