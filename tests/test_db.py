from __future__ import annotations

import pytest

from proposals.config import Settings
from proposals.db import Database, applied_migrations, load_migrations, migrate
from proposals.errors import DatabaseError


async def test_migrations_apply_once_and_are_recorded(database: Database) -> None:
    async with database.pool.connection() as conn:
        versions = await applied_migrations(conn)
        assert versions == [m.version for m in load_migrations()]
        assert await migrate(conn) == []  # idempotent: nothing left to apply
        cur = await conn.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'")
        assert await cur.fetchone() is not None


async def test_unreachable_server_gives_clear_error(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL"):
        await Database.open(settings)


async def test_embedded_server_starts_and_is_reused(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = await Database.open(settings)
    try:
        assert first.embedded
        async with first.pool.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS keepme (x int)")
            await conn.execute("INSERT INTO keepme VALUES (42)")
            await conn.commit()
    finally:
        await first.close()
    second = await Database.open(settings)
    try:
        async with second.pool.connection() as conn:
            cur = await conn.execute("SELECT x FROM keepme")
            assert await cur.fetchone() == (42,)
    finally:
        await second.close()
