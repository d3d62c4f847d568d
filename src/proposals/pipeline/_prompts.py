"""Prompt templates: ``prompts/<name>.txt`` files, overridable from a folder in the settings.

A template holds the system message, a line ``### USER ###``, then the user message, with
``$placeholders`` (:class:`string.Template`). Rendering is pure: the same inputs give the same
messages byte for byte, so the response cache and the simulator stay deterministic.
"""

from __future__ import annotations

import functools
import string
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

__all__ = ["PROMPT_NAMES", "Prompts"]

PROMPT_NAMES = (
    "analyze_map",
    "analyze_merge",
    "market_fit",
    "regulation",
    "feasibility",
    "positioning",
    "synthesize",
    "synthesize_reduce",
)
_SEPARATOR = "### USER ###"


class Prompts:
    """The templates of one run: built-ins, each replaced by ``<override_dir>/<name>.txt``."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self._templates = dict(_builtin())
        if override_dir is not None:
            for name in PROMPT_NAMES:
                candidate = Path(override_dir) / f"{name}.txt"
                if candidate.is_file():
                    self._templates[name] = _parse(name, candidate.read_text(encoding="utf-8"))

    def render(self, name: str, **values: object) -> list[dict[str, str]]:
        """Chat messages for template ``name`` with ``values`` substituted."""
        system, user = self._templates[name]
        try:
            return [
                {"role": "system", "content": system.substitute(values).strip()},
                {"role": "user", "content": user.substitute(values).strip()},
            ]
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                f"prompt template {name!r} uses an unknown placeholder: {exc}"
            ) from exc


@functools.cache
def _builtin() -> dict[str, tuple[string.Template, string.Template]]:
    """The packaged templates, read and parsed once per process (a run with no override
    folder then reads no file)."""
    folder = resources.files(__package__).joinpath("prompts")
    return {
        name: _parse(name, folder.joinpath(f"{name}.txt").read_text(encoding="utf-8"))
        for name in PROMPT_NAMES
    }


def _parse(name: str, text: str) -> tuple[string.Template, string.Template]:
    if _SEPARATOR not in text:
        raise ConfigError(f"prompt template {name!r} lacks the line {_SEPARATOR!r}")
    system, user = text.split(_SEPARATOR, 1)
    return string.Template(system), string.Template(user)
