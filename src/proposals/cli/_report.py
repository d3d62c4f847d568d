"""``proposals report RUN_ID``: a stored run's accounting, its Markdown report, its JSON, and
the timeline of its LLM calls (drawn to a PNG), all rebuilt from the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..config import Settings
from ..db import Database
from ..errors import InputError
from ..observe import draw_timeline
from ..pipeline import NODES, render_markdown
from ..runs import EventLog, RunRegistry, timeline_of, usage_by
from ._generate import print_accounting

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the report sub-command."""
    p = subparsers.add_parser(
        "report",
        help="a stored run's accounting, report, JSON and call timeline",
        description="Print a stored run's accounting per node and per model (calls, retries, "
        "cache hits, tokens, cost, wall time), rebuilt from its stored call events; optionally "
        "write its Markdown report, its JSON result and a timeline PNG of its LLM calls in "
        "flight per node. Works for unfinished runs too (accounting and timeline so far).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run (see 'proposals runs')")
    p.add_argument("--timeline", type=Path, metavar="PNG", help="draw the call timeline here")
    p.add_argument("--out", type=Path, metavar="MD", help="write the Markdown report here")
    p.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="write the accounting and timeline (and the result, when the run ended) as JSON",
    )
    p.set_defaults(handler=_report)


def _check_output(path: Path | None, suffix: str, what: str) -> None:
    if path is None:
        return
    if path.suffix.lower() != suffix:
        raise InputError(f"--{what} must name a {suffix} file, got {path}")
    if path.exists() and path.is_dir():
        raise InputError(f"--{what} {path} is a folder")


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    _check_output(args.timeline, ".png", "timeline")
    _check_output(args.out, ".md", "out")
    _check_output(args.json, ".json", "json")
    database = await Database.open(settings)
    try:
        record = await RunRegistry(database).get(args.run_id)
        if record is None:
            raise InputError(f"no run with id {args.run_id!r} (see 'proposals runs')")
        events = await EventLog(database).read(args.run_id)
    finally:
        await database.close()
    timeline = timeline_of(args.run_id, events)
    by_node, by_model = usage_by(timeline, "node"), usage_by(timeline, "model")
    print(f"run {record.id}: {record.status}, {len(timeline.calls)} LLM calls", file=sys.stderr)
    print_accounting(by_node, "node")
    print_accounting(by_model, "model")
    result = record.result
    if args.timeline is not None:
        order = [n for n in NODES if n in timeline.nodes]
        drawn = await asyncio.to_thread(draw_timeline, timeline, args.timeline, order=order)
        print(f"timeline ({', '.join(drawn)}): {args.timeline.resolve()}")
    if args.out is not None:
        if result is None:
            raise InputError(f"run {record.id} has no result yet ({record.status})")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render_markdown(result), encoding="utf-8")
        print(f"report: {args.out.resolve()}")
    if args.json is not None:
        data = {
            "run_id": record.id,
            "status": record.status,
            "calls": len(timeline.calls),
            "usage_by_node": {k: v.model_dump() for k, v in by_node.items()},
            "usage_by_model": {k: v.model_dump() for k, v in by_model.items()},
            "timeline": timeline.model_dump(mode="json"),
            "result": result.model_dump(mode="json") if result is not None else None,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"json: {args.json.resolve()}")
    return 0
