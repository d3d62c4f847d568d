"""``proposals serve`` (the HTTP API on uvicorn) and ``proposals keys`` (API keys per tenant)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..config import Settings
from ..db import Database
from ..errors import ConfigError, InputError
from ..keys import ApiKeys

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the serve and keys sub-commands."""
    s = subparsers.add_parser(
        "serve",
        help="run the HTTP API (and an in-process worker)",
        description="Serve the HTTP API with uvicorn (OpenAPI at /docs). Runs are queued in "
        "PostgreSQL and executed by workers: by default one in this process; --workers 0 "
        "serves only (run 'proposals worker' elsewhere).",
    )
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="in-process workers (0: serve only)")
    s.add_argument("--slots", type=int, default=4, help="runs per worker at once (default 4)")
    s.add_argument(
        "--no-auth",
        action="store_true",
        help="no API key: every request is the local tenant (refused unless bound to loopback)",
    )
    s.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    s.set_defaults(handler=_serve)

    k = subparsers.add_parser(
        "keys",
        help="create, list or revoke API keys",
        description="API keys of the HTTP API: each maps to a tenant; stored hashed, the "
        "secret is printed once at creation.",
    )
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION")
    ksub.required = True
    c = ksub.add_parser("create", help="create a key for a tenant (printed once)")
    c.add_argument("--tenant", required=True, help="tenant id, e.g. acme (created if new)")
    c.add_argument("--name", help="a label for the key")
    c.set_defaults(handler=_keys_create)
    ls = ksub.add_parser("list", help="list keys (never their secret)")
    ls.add_argument("--tenant", help="only this tenant's keys")
    ls.add_argument("--json", action="store_true", help="print as JSON")
    ls.set_defaults(handler=_keys_list)
    r = ksub.add_parser("revoke", help="revoke a key by its id (the 8 hex after 'pk_')")
    r.add_argument("key_id")
    r.set_defaults(handler=_keys_revoke)


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ..server import ServerOptions, create_app, is_loopback

    if args.no_auth and not is_loopback(args.host):
        raise ConfigError(
            f"--no-auth is only allowed on a loopback address, not {args.host!r}: "
            "create a key with 'proposals keys create --tenant NAME' instead"
        )
    if args.workers < 0 or args.slots < 1:
        raise InputError("--workers must be 0 or more and --slots at least 1")
    options = ServerOptions(
        auth=not args.no_auth,
        workers=args.workers,
        slots=args.slots,
        max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
        heartbeat_s=settings.sse_heartbeat_s,
    )
    config = uvicorn.Config(
        create_app(settings, options),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        ws="websockets-sansio",
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve()
    return 0


async def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    async with await Database.open(settings) as db:
        record, key = await ApiKeys(db).create(args.tenant, name=args.name)
    print(key)
    print(
        f"key {record.id} for tenant {record.tenant!r}: shown once, store it now "
        "(send it as 'Authorization: Bearer KEY')",
        file=sys.stderr,
    )
    return 0


async def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    async with await Database.open(settings) as db:
        keys = await ApiKeys(db).list(args.tenant)
    if args.json:
        print(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
        return 0
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
        print(f"{key.id}  {key.tenant:<20} {state:<8} last used {used}  {key.name or ''}")
    return 0


async def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async with await Database.open(settings) as db:
        revoked = await ApiKeys(db).revoke(args.key_id)
    if not revoked:
        raise InputError(f"no active key with id {args.key_id!r} (see 'proposals keys list')")
    print(f"revoked {args.key_id}")
    return 0
