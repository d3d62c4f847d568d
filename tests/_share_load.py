"""A load process for the shared-budget test and benchmark: one real gateway with a shared
budget lease, calling a simulator as fast as its share allows, printing its counters.

    python tests/_share_load.py DATABASE_URL BASE_URL [--tasks N] [--seconds S] [--lease S]
                                [--alone]     (no shared budget: the baseline of bench/scale.py)

Every half second it prints one JSON line: calls succeeded and failed so far, and its share.
It runs until ``--seconds`` have passed (then exits, deleting its lease) or it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time

from proposals.config import Settings
from proposals.db import Database
from proposals.llm import GatewayConfig, LLMGateway, SharedBudget, share_settings


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("base_url")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--max-tokens", type=int, default=60)
    parser.add_argument("--alone", action="store_true", help="no shared budget (a baseline)")
    args = parser.parse_args(argv)
    settings = Settings(
        data_dir=tempfile.mkdtemp(prefix="share-load-"), database_url=args.database_url
    )
    config = GatewayConfig.from_settings(
        settings, base_url=args.base_url, api_key="simulator", simulated=True, max_retries=20
    )
    counts = {"ok": 0, "failed": 0}
    serial = itertools.count()
    async with await Database.open(settings) as db:
        shared = (
            None if args.alone else SharedBudget(db, share_settings(config, lease_s=args.lease))
        )
        async with LLMGateway(config, shared=shared) as gateway:

            async def worker() -> None:
                while True:
                    n = next(serial)
                    try:
                        await gateway.complete(
                            f"Call {n}: summarise household savings rules in one line.",
                            max_tokens=args.max_tokens,
                            use_cache=False,
                        )
                        counts["ok"] += 1
                    except Exception as exc:  # counted, and named on stderr
                        counts["failed"] += 1
                        print(f"failed: {exc!r}", file=sys.stderr, flush=True)

            async def report() -> None:
                while True:
                    stats = gateway.stats()
                    line = {
                        "t": time.time(),
                        **counts,
                        "retries": stats.retries_by_cause,
                        "share": shared.describe() if shared else None,
                    }
                    print(json.dumps(line), flush=True)
                    await asyncio.sleep(0.5)

            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(worker()) for _ in range(args.tasks)]
                tasks.append(tg.create_task(report()))
                await asyncio.sleep(args.seconds)
                for task in tasks:
                    task.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
