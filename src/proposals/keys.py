"""API keys and the tenants they belong to (tables from migration 0006).

A key looks like ``pk_<id>_<secret>``: ``id`` (8 hex) finds the row, the whole key's SHA-256 is
what is stored, compared in constant time. The key itself is returned once, by
:meth:`ApiKeys.create`, and never stored. Keys are random 256-bit secrets, so a plain hash is
as strong as a slow one here and costs nothing per request.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from datetime import datetime

import psycopg
from pydantic import BaseModel, ConfigDict

from .db import Database
from .errors import DatabaseError, InputError

__all__ = ["ApiKey", "ApiKeys", "validate_tenant"]

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_KEY = re.compile(r"^pk_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")


def validate_tenant(name: str) -> str:
    """``name`` if it is a valid tenant id (lower case, digits, ``_ . -``, up to 63 chars)."""
    if not _TENANT.match(name):
        raise InputError(
            f"tenant {name!r} is not valid: use 1-63 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(BaseModel):
    """A stored key, without its secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    name: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeys:
    """Create, verify, list and revoke API keys."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(self, tenant: str, *, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``tenant`` (created if new): the stored record and the key itself,
        which is not kept anywhere and cannot be shown again."""
        validate_tenant(tenant)
        key_id = secrets.token_hex(4)
        key = f"pk_{key_id}_{secrets.token_urlsafe(32)}"
        try:
            async with self.database.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant,)
                )
                cur = await conn.execute(
                    "INSERT INTO api_keys (id, tenant, key_hash, name) VALUES (%s, %s, %s, %s)"
                    " RETURNING created_at",
                    (key_id, tenant, _digest(key), name),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"could not store the API key: {exc}") from exc
        assert row is not None
        return ApiKey(id=key_id, tenant=tenant, name=name, created_at=row[0]), key

    async def verify(self, key: str) -> str | None:
        """The tenant of ``key``, or None when it is malformed, unknown or revoked."""
        match = _KEY.match(key.strip())
        if match is None:
            return None
        try:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(
                    "UPDATE api_keys SET last_used_at = now() WHERE id = %s AND revoked_at IS NULL"
                    " RETURNING tenant, key_hash",
                    (match.group(1),),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"could not check the API key: {exc}") from exc
        if row is None or not hmac.compare_digest(row[1], _digest(key.strip())):
            return None
        return str(row[0])

    # ``list`` is a method name here, so annotations in the class body say ``builtins.list``.
    async def list(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        """Keys (of one tenant, or all), newest first."""
        query = (
            "SELECT id, tenant, name, created_at, last_used_at, revoked_at FROM api_keys"
            + (" WHERE tenant = %s" if tenant else "")
            + " ORDER BY created_at DESC"
        )
        async with self.database.pool.connection() as conn:
            cur = await conn.execute(query.encode(), (tenant,) if tenant else ())
            rows = await cur.fetchall()
        return [
            ApiKey(
                id=r[0],
                tenant=r[1],
                name=r[2],
                created_at=r[3],
                last_used_at=r[4],
                revoked_at=r[5],
            )
            for r in rows
        ]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; False when no such active key."""
        async with self.database.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
                (key_id,),
            )
            return cur.rowcount > 0
