"""Cited product proposals per country and customer profile, from a document corpus.

``proposals.ingest``, ``proposals.search`` and ``proposals.generate`` are imported on first
use, so ``import proposals`` (and the command line's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ingest import ingest
    from .runs import generate
    from .store import search

__all__ = ["generate", "ingest", "search"]

_HOME = {"generate": "runs", "ingest": "ingest", "search": "store"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Importing the subpackage ``proposals.ingest`` binds it as an attribute of this package;
    the name stays the function, as it was when these were imported eagerly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
