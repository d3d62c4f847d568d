"""``python -m proposals.simulator``: run a simulator until interrupted (used by
:class:`proposals.simulator.SimulatorProcess`; people use ``proposals simulate``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from . import serve_forever


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m proposals.simulator")
    parser.add_argument("--profile", default="tier1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=None)
    parser.add_argument("--overrides", default="{}", help="JSON object of profile fields")
    args = parser.parse_args(argv)
    overrides = json.loads(args.overrides)
    if args.time_scale is not None:
        overrides["time_scale"] = args.time_scale
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_forever(
                args.profile,
                host=args.host,
                port=args.port,
                seed=args.seed,
                announce=lambda line: print(line, flush=True),
                **overrides,
            )
        )
    return 0


raise SystemExit(_main(sys.argv[1:]))
