"""The ``proposals`` command line. Each sub-command lives in its own module of this package
and registers itself with :func:`argparse`; all of them call the async Python API.

Exit codes: 0 success, 1 runtime failure (or some files/items failed), 2 user error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..config import Settings
from ..errors import ProposalsError, UserError
from ..observe import setup_tracing

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

# Every command: the module of this package that registers it, and its one-line help. Only the
# module of the command being run is imported (``proposals --help`` imports none), so help
# and quick commands do not pay for the heavy libraries (torch, LangGraph, the OpenAI SDK).
_COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("_ingest", "load files and folders into the corpus"),
    "search": ("_ingest", "search the corpus (hybrid: vectors + full text)"),
    "docs": ("_ingest", "list ingested documents with their chunk counts"),
    "generate": ("_generate", "generate cited product proposals per country and profile"),
    "plan": ("_plan", "what a run would take (calls, tokens, cost, wall time), without the LLM"),
    "demo": (
        "_generate",
        "ingest examples/corpus and generate for 3 countries x 2 profiles, offline",
    ),
    "runs": ("_runs", "list stored runs, or show one run's events"),
    "simulate": ("_simulate", "run the offline OpenAI-compatible SIMULATOR (simulated answers)"),
    "serve": ("_serve", "run the HTTP API (and an in-process worker)"),
    "keys": ("_serve", "create, list or revoke API keys"),
    "worker": ("_worker", "execute queued runs (any number of workers may share one database)"),
    "eval": ("_eval", "measure quality on labelled data"),
    "db": ("_db", "show or stop the embedded PostgreSQL"),
    "report": ("_report", "a stored run's accounting, report, JSON and call timeline"),
}
_GLOBAL_OPTIONS_WITH_VALUE = ("--data-dir",)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("proposals")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "unknown"


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (skipping global options), or None."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser. With ``argv``, only the module of the command it names is
    imported (the others are listed from ``_COMMANDS``); without, every command is complete."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="proposals",
        description="Cited product proposals per country and customer profile.",
    )
    parser.add_argument("--version", action="version", version=f"proposals {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--data-dir", help="data folder (overrides PROPOSALS_DATA_DIR)", default=None
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = _command_in(argv) if argv is not None else None
    modules = dict.fromkeys(module for module, _ in _COMMANDS.values())
    if argv is not None:
        modules = dict.fromkeys([_COMMANDS[wanted][0]] if wanted in _COMMANDS else [])
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for command, (_, help_text) in _COMMANDS.items():
        if command not in sub.choices:
            sub.add_parser(command, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
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
        tracing = setup_tracing(settings)
        try:
            return _run_interruptible(handler(args, settings))
        finally:
            if tracing is not None:
                tracing.shutdown()  # flush the spans still queued for export
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ProposalsError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run_interruptible(command: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine. The first Ctrl-C cancels it: its own cleanup runs (a run is
    recorded as interrupted, in-flight calls are cancelled) and it exits 130; a second Ctrl-C
    exits at once. Worker threads still busy (a file being embedded) are not waited for."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(command)
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            print("interrupted again: exiting now", file=sys.stderr, flush=True)
            os._exit(130)
        print("interrupted: stopping (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
        task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)  # main thread, Unix: else default
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if not interrupts:
            raise
        return 130
    finally:
        _close_loop(loop, wait_for_threads=not interrupts)
        if interrupts:
            sys.stdout.flush()
            sys.stderr.flush()
            if any(t.is_alive() and not t.daemon for t in _other_threads()):
                os._exit(130)  # a thread cannot be cancelled; its work is not half-stored


def _other_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread()]


def _close_loop(loop: asyncio.AbstractEventLoop, *, wait_for_threads: bool) -> None:
    """What ``asyncio.run`` does on exit, without waiting for busy threads when asked."""
    try:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        if wait_for_threads:
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
