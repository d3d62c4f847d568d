"""Versioned SQL migrations: ``NNNN_name.sql`` files applied in order, each once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from ..errors import DatabaseError

MIGRATIONS_PACKAGE = "proposals.db.migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant shared by every process using this database: serialises concurrent migrators.
_LOCK_KEY = 0x70726F70


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(package: str = MIGRATIONS_PACKAGE) -> list[Migration]:
    """The migrations shipped in ``package``, sorted by version; duplicates are an error."""
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise DatabaseError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def applied_migrations(conn: psycopg.AsyncConnection) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty when the table does not exist)."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [r[0] for r in await cur.fetchall()]


async def migrate(conn: psycopg.AsyncConnection, package: str = MIGRATIONS_PACKAGE) -> list[int]:
    """Apply every migration not yet recorded, each in its own transaction.

    Returns the versions applied now. Safe to call from several processes at once.
    """
    applied_now: list[int] = []
    was_autocommit = conn.autocommit
    if not was_autocommit:
        await conn.commit()
        await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = set(await applied_migrations(conn))
        for migration in load_migrations(package):
            if migration.version in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        if not was_autocommit:
            await conn.set_autocommit(False)
    return applied_now
