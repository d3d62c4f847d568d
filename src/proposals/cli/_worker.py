"""``proposals worker``: claim queued runs from the database and execute them, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from ..config import Settings
from ..errors import InputError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``worker`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="execute queued runs (any number of workers may share one database)",
        description="Claim queued runs from PostgreSQL and execute them, at most --slots at "
        "once, holding a lease renewed every --heartbeat seconds. A run whose worker died is "
        "claimed again once its lease expires and resumes from its checkpoint. SIGTERM or "
        "Ctrl-C stops the worker: runs in progress go back to the queue for another worker.",
    )
    p.add_argument("--slots", type=int, default=4, help="runs executed at once (default 4)")
    p.add_argument("--lease", type=float, default=30.0, help="lease in seconds (default 30)")
    p.add_argument(
        "--heartbeat", type=float, default=5.0, help="lease renewal period in seconds (default 5)"
    )
    p.add_argument("--id", dest="worker_id", default=None, help="worker name (default host:pid)")
    p.set_defaults(handler=_worker)


async def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from ..runs import RunManager, Worker

    if args.slots < 1:
        raise InputError("--slots must be at least 1")
    if not 0 < args.heartbeat < args.lease:
        raise InputError("--heartbeat must be positive and shorter than --lease")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with await RunManager.open(
        settings, lease_s=args.lease, heartbeat_s=args.heartbeat
    ) as manager:
        worker = Worker(
            manager,
            slots=args.slots,
            lease_s=args.lease,
            heartbeat_s=args.heartbeat,
            worker_id=args.worker_id,
        )
        services = await manager.services()
        print(
            f"worker {worker.worker_id}: {worker.slots} slots, lease {args.lease:g}s, "
            f"LLM {services.provider}" + (" (SIMULATED answers)" if services.simulated else ""),
            flush=True,
        )
        task = asyncio.create_task(worker.run())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        for t in (task, waiter):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(
            f"worker {worker.worker_id} stopped: {worker.claimed} runs claimed, "
            f"at most {worker.peak} at once",
            file=sys.stderr,
            flush=True,
        )
    return 0
