"""``proposals runs``: the runs stored in the database, to find one to resume or inspect."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import Settings
from ..db import Database
from ..errors import InputError
from ..runs import EventLog, RunRecord, RunRegistry

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the runs sub-command."""
    p = subparsers.add_parser(
        "runs",
        help="list stored runs, or show one run's events",
        description="Without RUN_ID: the most recent runs with their status. With RUN_ID: that "
        "run's stored events in order (what a client that missed them would replay). "
        "A run left 'queued', 'running' by a stopped process, 'cancelled' or 'failed' "
        "continues with 'proposals generate --resume RUN_ID' (or any 'proposals worker').",
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="show this run's events")
    p.add_argument("-n", type=int, default=20, help="how many runs to list (default 20)")
    p.add_argument("--after", type=int, default=0, help="with RUN_ID: events after this seq")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(handler=_runs)


def _summary(record: RunRecord) -> dict[str, Any]:
    result = record.result
    return {
        "id": record.id,
        "status": record.status,
        "created_at": record.created_at.isoformat(timespec="seconds"),
        "updated_at": record.updated_at.isoformat(timespec="seconds"),
        "brief": record.request.brief,
        "countries": record.request.countries,
        "proposals": len(result.proposals) if result else None,
        "failed_items": len(result.failed) if result else None,
        "tokens": result.usage.total_tokens if result else None,
        "error": record.error,
    }


async def _runs(args: argparse.Namespace, settings: Settings) -> int:
    if args.n < 1:
        raise InputError("-n must be at least 1")
    database = await Database.open(settings)
    try:
        if args.run_id:
            if await RunRegistry(database).get(args.run_id) is None:
                raise InputError(f"no run with id {args.run_id!r} (see 'proposals runs')")
            events = await EventLog(database).read(args.run_id, after=args.after)
            for event in events:
                if args.json:
                    print(event.model_dump_json())
                else:
                    print(f"{event.seq:>6}  {event.type:<14} {_event_line(event)}")
            return 0
        records = await RunRegistry(database).list(limit=args.n, with_result=True)
    finally:
        await database.close()
    rows = [_summary(r) for r in records]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no runs yet")
        return 0
    for row in rows:
        done = "" if row["proposals"] is None else f"{row['proposals']} proposals, "
        failed = "" if not row["failed_items"] else f"{row['failed_items']} failed items, "
        brief = row["brief"] if len(row["brief"]) <= 50 else row["brief"][:47] + "..."
        print(
            f"{row['id']}  {row['status']:<22} {row['created_at']}  "
            f"{','.join(row['countries'])}  {done}{failed}{brief}"
        )
    return 0


def _event_line(event: Any) -> str:
    fields = event.model_dump(exclude={"type", "seq", "run_id", "at", "usage", "result"})
    parts = [f"{k}={v}" for k, v in fields.items() if v not in (None, "", [], {})]
    line = " ".join(parts)
    return line if len(line) <= 110 else line[:107] + "..."
