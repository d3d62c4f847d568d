from __future__ import annotations

import asyncio
import time

import pytest

from proposals.config import Settings
from proposals.db import Database, applied_migrations, load_migrations, migrate
from proposals.errors import DatabaseError
from proposals.pipeline import Profile, ProposalRequest
from proposals.runs import RunRegistry


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


async def test_a_connection_a_cancelled_task_left_in_pipeline_mode_is_not_reused(
    database: Database,
) -> None:
    """psycopg 3.3 leaves a connection in pipeline mode when its task is cancelled while
    entering a pipeline (``conn.pipeline()``, a transaction inside one, ``executemany``): once
    in, it yields to the loop if the loop was busy for 5 ms. Back in the pool like that, the
    next borrower's queries were queued in the stale pipeline and read no rows: an
    interrupted run's record seemed to vanish under load. Such a connection is discarded."""
    registry = RunRegistry(database)
    request = ProposalRequest(brief="savings", countries=["AR"], profiles=[Profile(name="savers")])
    await registry.create("r1", request)

    async def cancelled_entering_a_pipeline() -> None:
        async with database.pool.connection() as conn:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            # Blocking on purpose: the loop looks busy, so psycopg yields once inside.
            time.sleep(0.02)  # noqa: ASYNC251
            async with conn.pipeline():
                await conn.execute("SELECT 1")

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_entering_a_pipeline())
    # Every connection of the pool at once (the one returned above among them, if kept).
    found = await asyncio.gather(*(registry.get("r1") for _ in range(database.pool.max_size)))
    assert all(r is not None and r.id == "r1" for r in found)
