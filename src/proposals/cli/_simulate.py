"""``proposals simulate``: the offline OpenAI-compatible simulator, until Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``simulate`` sub-command."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run the offline OpenAI-compatible SIMULATOR (simulated answers)",
        description="Serve an OpenAI-compatible API on loopback whose answers are simulated "
        "from the prompt's own text, with a provider's limits, faults and latency.",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--profile",
        default=None,
        help="tier1, tier2, flaky or unlimited (default: settings' simulator_profile)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated answers")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="wall seconds per simulated second (0.01 = 100x faster)",
    )
    parser.set_defaults(handler=_handle)


async def _handle(args: argparse.Namespace, settings: Settings) -> int:
    from ..simulator import serve_forever

    overrides: dict[str, Any] = {}
    if args.time_scale is not None:
        overrides["time_scale"] = args.time_scale
    profile = args.profile or settings.simulator_profile
    await serve_forever(
        profile,
        host=args.host,
        port=args.port,
        seed=args.seed,
        announce=lambda line: print(line, flush=True),
        **overrides,
    )
    return 0
