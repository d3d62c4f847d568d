"""``generate --server URL`` and ``ingest --server URL``: the same commands through a
proposals server's HTTP API (:mod:`proposals.client`), with the key in PROPOSALS_API_KEY."""

from __future__ import annotations

import argparse
import json
import sys

from ..client import ProposalsClient
from ..config import Settings
from ..errors import InputError
from ..pipeline import ProposalRequest, ProposalResult
from ..runs import RunFinished
from ._generate import _Progress, _summary

__all__ = ["generate_remote", "ingest_remote"]


def _client(url: str, settings: Settings) -> ProposalsClient:
    return ProposalsClient(url, settings.api_key)


async def generate_remote(
    request: ProposalRequest | None, settings: Settings, args: argparse.Namespace
) -> ProposalResult | None:
    """Create the run on the server (or, with ``--resume``, follow one), show its events
    live through any number of dropped connections, then fetch its result."""
    if args.rerun:
        raise InputError("--rerun is not available with --server; submit the request again")
    async with _client(args.server, settings) as client:
        if args.resume:
            record = await client.get_run(args.resume)
            print(f"following run {record.id} ({record.status}) on {args.server}", file=sys.stderr)
        else:
            assert request is not None
            record = await client.create_run(request)
            print(f"run id: {record.id} (on {args.server})", file=sys.stderr)
        finished: RunFinished | None = None
        with _Progress(quiet=args.quiet) as progress:
            async for event in client.events(record.id):
                progress.update(event)
                if isinstance(event, RunFinished):
                    finished = event
        assert finished is not None
        if finished.status not in ("completed", "completed_with_errors", "stopped_budget"):
            print(
                f"run {record.id} {finished.status}: {finished.error or ''}".rstrip(),
                file=sys.stderr,
            )
            return None
        result = await client.proposals(record.id)
    _summary(result)
    return result


async def ingest_remote(args: argparse.Namespace, settings: Settings) -> int:
    """Upload the files; one line per failure, exit 1 when any failed."""
    if args.prune or args.reset_index:
        raise InputError("--prune and --reset-index are local only (not with --server)")
    async with _client(args.server, settings) as client:
        results = await client.upload(args.paths, country=args.country, doc_type=args.doc_type)
    failed = [r for r in results if r["status"] == "failed"]
    if args.json:
        print(json.dumps({"files": results, "ok": not failed}, indent=2))
    else:
        ingested = sum(r["status"] == "ingested" for r in results)
        unchanged = sum(r["status"] == "unchanged" for r in results)
        print(
            f"uploaded to {args.server}: {ingested} ingested, {unchanged} unchanged, {len(failed)} failed"
        )
        for r in failed:
            print(f"  FAILED {r['name']}: {r['reason']}", file=sys.stderr)
    return 1 if failed else 0
