"""The ``proposals`` command line. Each sub-command lives in its own module of this package
and registers itself with :func:`argparse`; all of them call the async Python API.

Exit codes: 0 success, 1 runtime failure (or some files/items failed), 2 user error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..config import Settings
from ..errors import ProposalsError, UserError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

_COMMAND_MODULES = ("_ingest", "_simulate", "_generate", "_runs", "_serve", "_worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proposals",
        description="Cited product proposals per country and customer profile.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--data-dir", help="data folder (overrides PROPOSALS_DATA_DIR)", default=None
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Model loading draws tqdm bars that would break the live progress display.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # pgserver asks platformdirs for a runtime folder; its fallback warning is noise here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        overrides: dict[str, Any] = {}
        if args.data_dir:
            overrides["data_dir"] = args.data_dir
        settings = Settings(**overrides)
        handler: Handler = args.handler
        return asyncio.run(handler(args, settings))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProposalsError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
