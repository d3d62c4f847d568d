"""``proposals plan``: what a run would take (LLM calls, tokens, cost and wall time per node),
worked out before it starts and without calling the LLM."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ..config import Settings
from ..planning import Plan, render_plan
from ..simulator import PROFILES, get_profile
from ._request import add_request_arguments, check_output, common_options, request_from_args

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the plan sub-command."""
    p = subparsers.add_parser(
        "plan",
        help="what a run would take (calls, tokens, cost, wall time), without the LLM",
        description="Retrieve and pack the request exactly as 'generate' would, replay its "
        "calls with the offline simulator's answers standing in for the model's, and print "
        "per node the LLM calls, input tokens (exact where the corpus alone decides them), "
        "output tokens (estimated), cost and the expected wall time under the provider's "
        "limits; warns when the run would exceed --max-tokens / --max-cost. Takes the same "
        "arguments as 'generate'.",
    )
    add_request_arguments(p)
    common_options(p)
    p.add_argument("--json", dest="json_out", type=Path, help="write the plan as JSON here")
    p.add_argument(
        "--sim-profile",
        metavar="NAME",
        help="plan for this simulator profile's limits and latency "
        f"({', '.join(PROFILES)}) instead of the configured provider",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="ask a proposals server to plan on its documents (key from PROPOSALS_API_KEY)",
    )
    p.set_defaults(handler=_plan)


async def _plan(args: argparse.Namespace, settings: Settings) -> int:
    check_output(args.json_out, "--json")
    request = request_from_args(args)
    if args.sim_profile is not None:
        get_profile(args.sim_profile)  # an unknown name fails here, in one line
    if args.server:
        from ..client import ProposalsClient

        async with ProposalsClient(args.server, settings.api_key) as client:
            plan = await client.plan(
                request, sim_profile=args.sim_profile, time_scale=args.time_scale
            )
    else:
        plan = await _plan_here(request, settings, args)
    print(render_plan(plan))
    if args.json_out is not None:
        await asyncio.to_thread(args.json_out.write_text, plan.model_dump_json(indent=2))
        print(f"json: {args.json_out.resolve()}", file=sys.stderr)
    return 0


async def _plan_here(request: Any, settings: Settings, args: argparse.Namespace) -> Plan:
    from ..db import Database
    from ..embeddings import embedder_from_settings
    from ..planning import make_plan
    from ..store import Store

    embedder = embedder_from_settings(settings)
    async with await Database.open(settings) as database:
        return await make_plan(
            request,
            settings,
            store=Store(database, embedder),
            sim_profile=args.sim_profile,
            time_scale=args.time_scale,
        )
