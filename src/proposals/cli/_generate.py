"""``proposals generate`` and ``proposals demo``: run the pipeline with live progress."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import InputError
from ..pipeline import (
    ACCOUNTING_COLUMNS,
    LENSES,
    NODES,
    Profile,
    ProposalRequest,
    ProposalResult,
    accounting_rows,
    load_profiles,
    render_markdown,
)
from ..runs import (
    BatchFinished,
    BatchStarted,
    CallEvent,
    ItemFailed,
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFinished,
    RunManager,
    RunStarted,
    WarningEvent,
    open_services,
)
from ._request import (
    add_request_arguments,
    build_request,
    check_output,
    common_options,
    request_from_args,
)

__all__ = ["register"]

_DEMO_BRIEF = "savings, microinsurance and payment products for low- and middle-income households"
_DEMO_COUNTRIES = "AR,BR,MX"


def register(subparsers: Any) -> None:
    """Add the generate and demo sub-commands."""
    g = subparsers.add_parser(
        "generate",
        help="generate cited product proposals per country and profile",
        description="Run the proposal pipeline (retrieve, themes, four lenses, synthesis) and "
        "write a Markdown report and/or JSON. Without a configured provider the offline "
        "simulator is used and the output says the text is simulated.",
    )
    add_request_arguments(g)
    common_options(g)
    g.add_argument("--out", type=Path, help="write the Markdown report here")
    g.add_argument("--json", dest="json_out", type=Path, help="write the result as JSON here")
    g.add_argument("--resume", metavar="RUN_ID", help="continue an unfinished run instead")
    g.add_argument(
        "--yes",
        action="store_true",
        help="start a run larger than PROPOSALS_CONFIRM_LENS_ITEMS without asking",
    )
    g.add_argument(
        "--rerun",
        metavar="RUN_ID",
        help="run a stored run's request again as a new run: calls answered before come "
        "from the response cache, items that failed are tried again",
    )
    g.add_argument(
        "--server",
        metavar="URL",
        help="run on a proposals server instead (key from PROPOSALS_API_KEY); with --resume, "
        "follow that server's run",
    )
    g.set_defaults(handler=_generate)

    d = subparsers.add_parser(
        "demo",
        help="ingest examples/corpus and generate for 3 countries x 2 profiles, offline",
        description="The offline demo: ingests the fictional sample corpus, runs the full "
        "pipeline against the simulator (unless a provider is configured) and writes "
        "report.md and result.json into --out-dir.",
    )
    d.add_argument(
        "--corpus", type=Path, default=None, help="corpus folder (default: examples/corpus)"
    )
    d.add_argument("--countries", default=_DEMO_COUNTRIES, help=f"default {_DEMO_COUNTRIES}")
    d.add_argument("--out-dir", type=Path, default=Path("out"), help="default ./out")
    common_options(d)
    # The demo is always a new local run: the shared executor also reads generate's --resume/--rerun.
    d.set_defaults(handler=_demo, resume=None, rerun=None)


# Calls and tokens per lens item in the reference-shaped run (bench/full_scale.py: 720 lens
# items, 265 calls, ~1.02M tokens); a rough guide to what a run will take, said before it starts.
# ``proposals plan`` works the figures out exactly, but it retrieves everything a run
# retrieves (seconds on a large request), so generate does not pay for it before every run.
_CALLS_PER_ITEM = 265 / 720
_TOKENS_PER_ITEM = 1_022_000 / 720


def _check_scale(request: ProposalRequest, settings: Settings, *, yes: bool) -> None:
    """Say what the run will take; above the threshold, ask (or refuse without --yes)."""
    pairs = len(request.pairs())
    themes = request.options.themes
    items = themes * pairs * len(LENSES)
    calls = max(1, round(items * _CALLS_PER_ITEM))
    tokens = items * _TOKENS_PER_ITEM
    figure = (
        f"{items:,} lens items ({themes} themes x {pairs} country-profile pairs x "
        f"{len(LENSES)} lenses): about {calls:,} LLM calls and {tokens / 1e6:.1f}M tokens"
    )
    limit = settings.confirm_lens_items
    if items <= limit:
        print(f"plan: {figure} (rough; 'proposals plan' works it out per node)", file=sys.stderr)
        return
    if yes:
        print(f"plan: {figure} (above {limit:,}, started with --yes)", file=sys.stderr)
        return
    if sys.stdin.isatty() and sys.stderr.isatty():
        answer = input(f"plan: {figure}, above the usual {limit:,}. Start it? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            return
        raise InputError("not started")
    raise InputError(
        f"this run would be {figure}, above PROPOSALS_CONFIRM_LENS_ITEMS={limit:,}; "
        "add --yes to start it, or fewer profiles, countries or --themes"
    )


def _check_out_dir(path: Path) -> None:
    """``demo --out-dir``: an existing writable folder, or one to create in an existing one."""
    if path.exists():
        if not path.is_dir():
            raise InputError(f"--out-dir {path}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"--out-dir {path}: the folder is not writable")
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--out-dir {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--out-dir {path}: cannot create a folder in {parent}")


async def _generate(args: argparse.Namespace, settings: Settings) -> int:
    request = None
    check_output(args.out, "--out")
    check_output(args.json_out, "--json")
    if args.out is not None and args.json_out is not None and args.out == args.json_out:
        raise InputError("--out and --json name the same file")
    if args.resume and args.rerun:
        raise InputError("give --resume or --rerun, not both")
    if not args.resume and not args.rerun:
        request = request_from_args(args, "(or --resume / --rerun RUN_ID)")
        _check_scale(request, settings, yes=args.yes)
    if args.server:
        from ._remote import generate_remote

        result = await generate_remote(request, settings, args)
    else:
        result = await _execute(request, settings, args)
    if result is None:
        return 1
    await asyncio.to_thread(_write_outputs, result, args.out, args.json_out)
    if not args.out and not args.json_out:
        print(render_markdown(result))
    return 0 if result.status == "completed" else 1


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from ..db import Database
    from ..embeddings import embedder_from_settings
    from ..ingest import ingest

    _check_out_dir(args.out_dir)
    corpus = args.corpus or _find_corpus()
    profiles_file = corpus.resolve().parent / "profiles.yaml"
    profiles = (
        load_profiles(profiles_file)
        if profiles_file.is_file()
        else [
            Profile(name="young urban savers", description="smartphone-first, small surpluses"),
            Profile(name="rural smallholder families", description="seasonal income, agents"),
        ]
    )
    request = build_request(args, profiles, _DEMO_BRIEF)
    started = time.monotonic()
    embedder = embedder_from_settings(settings)
    # One database for ingest and run: the embedded server is not stopped in between.
    async with await Database.open(settings) as database:
        print(f"ingesting {corpus} ...", file=sys.stderr)
        report = await ingest([corpus], database=database, embedder=embedder)
        print(
            f"corpus: {len(report.added)} added, {len(report.unchanged)} unchanged, "
            f"{len(report.failed)} failed ({time.monotonic() - started:.1f} s)",
            file=sys.stderr,
        )
        result = await _execute(request, settings, args, embedder=embedder, database=database)
    if result is None:
        return 1
    out_dir: Path = args.out_dir
    await asyncio.to_thread(out_dir.mkdir, exist_ok=True)
    await asyncio.to_thread(_write_outputs, result, out_dir / "report.md", out_dir / "result.json")
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0 if result.status == "completed" else 1


def _write_outputs(result: ProposalResult, report: Path | None, json_out: Path | None) -> None:
    try:
        if report is not None:
            report.write_text(render_markdown(result), encoding="utf-8")
            print(f"report: {report.resolve()}")
        if json_out is not None:
            json_out.write_text(result.model_dump_json(indent=2), encoding="utf-8")
            print(f"json:   {json_out.resolve()}")
    except OSError as exc:
        # Checked before the run; this is a folder removed or a disk filled meanwhile.
        raise InputError(
            f"cannot write {exc.filename or 'the output'}: {exc.strerror or exc}; the result "
            f"is stored: 'proposals runs {result.run_id}', or rerun with --resume "
            f"{result.run_id} and another --out"
        ) from exc


def _find_corpus() -> Path:
    here = Path("examples/corpus")
    if here.is_dir():
        return here
    repo = Path(__file__).resolve().parents[3] / "examples" / "corpus"
    if repo.is_dir():
        return repo
    raise InputError("examples/corpus not found; run from the repository or pass --corpus")


async def _execute(
    request: ProposalRequest | None, settings: Settings, args: argparse.Namespace, **kw: Any
) -> ProposalResult | None:
    """Run (or resume, or rerun) here through a RunManager, showing its events live."""
    sim = {}
    if args.time_scale is not None and not settings.provider_configured:
        sim["time_scale"] = args.time_scale
    progress = _Progress(quiet=args.quiet)
    async with open_services(
        settings, simulator_overrides=sim, read_cache=not args.no_cache, **kw
    ) as services:
        if services.simulated:
            print(
                f"NOTE: no LLM provider configured; using the offline {services.provider}. "
                "Proposals will be SIMULATED text.",
                file=sys.stderr,
            )
        async with await RunManager.open(settings, services=services) as manager:
            after = 0
            if args.resume:
                record = await manager.resume(args.resume, run_here=True)
                after = record.last_seq
                if record.worker_id != manager.holder:
                    print(
                        f"run {record.id} is being executed by {record.worker_id}; following it",
                        file=sys.stderr,
                    )
            elif args.rerun:
                record = await manager.rerun(args.rerun, run_here=True)
                print(f"re-running the request of run {args.rerun}", file=sys.stderr)
            else:
                assert request is not None
                record = await manager.submit(request, run_here=True)
            print(f"run id: {record.id}", file=sys.stderr, flush=True)
            finished: RunFinished | None = None
            try:
                with progress:
                    async for event in manager.subscribe(record.id, after=after):
                        progress.update(event)
                        if isinstance(event, RunFinished):
                            finished = event
            except asyncio.CancelledError:
                # Ctrl-C: end the run here as interrupted (its in-flight calls are cancelled)
                # rather than leave it to the queue, and say how to continue it.
                in_flight = progress.in_flight
                await manager.interrupt(record.id)
                print(
                    f"interrupted: run {record.id} stopped after {progress.calls_done} calls, "
                    f"{in_flight} in flight cancelled; continue it with: "
                    f"proposals generate --resume {record.id}",
                    file=sys.stderr,
                    flush=True,
                )
                raise
    assert finished is not None
    if finished.result is None:
        print(
            f"run {record.id} {finished.status}: {finished.error or ''}".rstrip(), file=sys.stderr
        )
        return None
    _summary(finished.result)
    return finished.result


def _summary(result: ProposalResult) -> None:
    u = result.usage
    print(
        f"status {result.status}: {len(result.proposals)} proposals, {len(result.failed)} failed "
        f"items, {u.calls} calls ({u.cached_calls} cached, {u.retries} retries), "
        f"{u.prompt_tokens:,} tokens in / {u.completion_tokens:,} out, ${u.cost_usd:.4f}, "
        f"{result.elapsed_s:.1f} s" + (" — SIMULATED text" if result.simulated else ""),
        file=sys.stderr,
    )
    print_accounting(result.usage_by_node, "node")
    for f in result.failed[:20]:
        print(f"  failed: {f.node} {f.item}: {f.error_type}", file=sys.stderr)


def print_accounting(by: dict[str, Any], title: str) -> None:
    """A plain-text table of per-node (or per-model) accounting, to stderr."""
    if not by:
        return
    rows = [[title, *ACCOUNTING_COLUMNS], *accounting_rows(by)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  " + "  ".join(cells), file=sys.stderr)


class _Progress:
    """Live per-node progress (rich) from the run's events; plain lines when not a terminal."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.live_mode = self.console.is_terminal and not quiet
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = defaultdict(int)
        self.running: dict[str, int] = defaultdict(int)
        self.failed: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.tokens: dict[str, int] = defaultdict(int)
        self.finished: set[str] = set()
        self.in_flight = 0
        self.calls_done = 0
        self.last: RunEvent | None = None
        self.started = time.monotonic()
        self._live: Any = None

    def __enter__(self) -> _Progress:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self._table(), console=self.console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def update(self, event: RunEvent) -> None:
        self.last = event
        if isinstance(event, NodeStarted):
            self.total[event.node] = event.total
            self._line(f"{event.node}: started ({event.total})")
        elif isinstance(event, NodeFinished):
            self.finished.add(event.node)
            if event.node in ("retrieve", "plan"):
                self.done[event.node] = event.done
            self._line(f"{event.node}: finished ({event.done} done, {event.failed} failed)")
        elif isinstance(event, BatchStarted):
            self.running[event.node] += 1
        elif isinstance(event, BatchFinished):
            self.running[event.node] -= 1
            self.done[event.node] += 1
        elif isinstance(event, ItemFailed):
            self.failed[event.failure.node] += 1
            self._line(f"failed: {event.failure.item} ({event.failure.error_type})")
        elif isinstance(event, CallEvent):
            self.in_flight = event.in_flight
            node = event.node or "?"
            if event.phase == "started":
                self.calls[node] += 1
            elif event.phase == "finished":
                self.calls_done += 1
                self.tokens[node] += event.prompt_tokens + event.completion_tokens
        elif isinstance(event, WarningEvent) and event.kind == "budget":
            self._line(f"warning: {event.message}")
        elif isinstance(event, RunStarted):
            self._line(
                f"run started: {event.pairs} country x profile pairs, {event.themes} themes, "
                f"{event.provider}"
            )
        if self._live is not None:
            self._live.update(self._table())

    def _line(self, text: str) -> None:
        if not self.live_mode and not self.quiet:
            elapsed = time.monotonic() - self.started
            self.console.print(f"[{elapsed:6.1f}s] {text}", highlight=False)

    def _table(self) -> Any:
        from rich.table import Table

        usage = self.last.usage if self.last else None
        elapsed = time.monotonic() - self.started
        title = f"proposals — {elapsed:.0f}s elapsed, {self.in_flight} calls in flight"
        if usage:
            title += f", {usage.total_tokens:,} tokens, ${usage.cost_usd:.4f}"
        table = Table(title=title, title_justify="left")
        for col in ("node", "done", "in flight", "failed", "calls", "tokens", ""):
            table.add_column(col, justify="left" if col in ("node", "") else "right")
        for node in NODES:
            total = self.total.get(node)
            state = "✓" if node in self.finished else ("…" if total is not None else "")
            done = f"{self.done[node]}/{total}" if total is not None else "-"
            table.add_row(
                node,
                done,
                str(max(0, self.running[node])),
                str(self.failed[node]),
                str(self.calls[node]),
                f"{self.tokens[node]:,}",
                state,
            )
        return table
