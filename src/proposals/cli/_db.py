"""``proposals db status`` and ``proposals db stop``: the embedded PostgreSQL's lifecycle."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..config import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the db sub-command."""
    p = subparsers.add_parser(
        "db",
        help="show or stop the embedded PostgreSQL",
        description="Without PROPOSALS_DATABASE_URL, a private PostgreSQL runs in the data "
        "folder. The first command that needs it starts it; it stops when the last live "
        "command using it exits. A process killed without exiting (kill -9) is dropped from "
        "its users. 'status' shows the server and the processes using it; 'stop' stops it now "
        "(refused while another command uses it, unless --force).",
    )
    p.add_argument("action", choices=("status", "stop"), help="status or stop")
    p.add_argument("--force", action="store_true", help="stop even while commands use it")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(handler=_db)


async def _db(args: argparse.Namespace, settings: Settings) -> int:
    from ..db import embedded_status, stop_embedded

    if settings.database_url:
        print("PROPOSALS_DATABASE_URL is set: no embedded PostgreSQL is used by this project")
        return 0
    pgdata = settings.data_dir / "pg"
    if args.action == "stop":
        before = await asyncio.to_thread(stop_embedded, pgdata, force=args.force)
        if before.running:
            print(f"stopped the embedded PostgreSQL in {before.pgdata} (pid {before.pid})")
        else:
            print(f"the embedded PostgreSQL in {before.pgdata} is not running")
        return 0
    status = await asyncio.to_thread(embedded_status, pgdata)
    if args.json:
        row = {
            "pgdata": str(status.pgdata),
            "initialised": status.initialised,
            "running": status.running,
            "pid": status.pid,
            "socket_dir": status.socket_dir,
            "users": status.users,
            "dropped_dead_users": status.dropped,
        }
        print(json.dumps(row, indent=2))
        return 0
    if not status.initialised:
        print(f"stopped: no embedded PostgreSQL in {status.pgdata} yet (created on first use)")
    elif not status.running:
        print(f"stopped: embedded PostgreSQL in {status.pgdata}")
    else:
        users = ", ".join(map(str, status.users)) or "none"
        print(
            f"running: embedded PostgreSQL in {status.pgdata}, pid {status.pid}, socket in "
            f"{status.socket_dir}; used by: {users}"
        )
    if status.dropped:
        print(f"dropped dead users: {', '.join(map(str, status.dropped))}")
    return 0
