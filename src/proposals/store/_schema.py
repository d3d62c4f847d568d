"""Index management: the embedding model the index holds, the HNSW indexes (global and per
country), and resetting the index so another model can be used."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ..errors import EmbeddingModelMismatch
from ._models import IndexInfo

__all__ = [
    "COUNTRY_INDEX_MIN_CHUNKS",
    "build_country_indexes",
    "check_index_model",
    "country_condition",
    "country_indexes",
    "ensure_index",
    "model_mismatch",
    "read_index_info",
    "reset_index",
]

log = logging.getLogger(__name__)

HNSW_INDEX = "chunks_embedding_hnsw"
_LOCK_KEY = 0x70726F71  # serialises first-time typing of the embedding column
COUNTRY_INDEX_MIN_CHUNKS = 10_000
"""A country with this many chunks gets its own partial HNSW index (see
:meth:`Store.ensure_country_indexes`); below it, exact scans and a raised ``ef_search`` on the
global index are cheap enough."""
_COUNTRY_INDEX_MAX_SHARE = 0.5


async def read_index_info(conn: psycopg.AsyncConnection) -> IndexInfo | None:
    """The model recorded for the index, or None before the first ingest."""
    cur = await conn.execute("SELECT embedding_model, embedding_dim FROM index_meta")
    row = await cur.fetchone()
    return IndexInfo(embedding_model=row[0], embedding_dim=row[1]) if row else None


def model_mismatch(held: IndexInfo, name: str, dim: int | None) -> EmbeddingModelMismatch:
    """The error for embedding with ``name`` into an index that holds ``held``'s vectors."""
    size = f" ({dim} dims)" if dim else ""
    return EmbeddingModelMismatch(
        f"the index holds vectors of embedding model {held.embedding_model!r} "
        f"({held.embedding_dim} dims) but this process embeds with {name!r}{size}; vectors of "
        "two models cannot be mixed. Either set PROPOSALS_EMBEDDING_PROVIDER / "
        f"PROPOSALS_EMBEDDING_MODEL back to {held.embedding_model!r}, or rebuild the index "
        "with the new model: `proposals ingest --reset-index PATH...` (re-embeds everything)."
    )


async def check_index_model(conn: psycopg.AsyncConnection, name: str) -> IndexInfo | None:
    """Raise EmbeddingModelMismatch when the index holds another model's vectors and is
    not empty. Returns what the index records (None when nothing was ingested yet)."""
    info = await read_index_info(conn)
    if info is not None and info.embedding_model != name:
        cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM chunks)")
        row = await cur.fetchone()
        if row and row[0]:
            raise model_mismatch(info, name, None)
    return info


async def ensure_index(conn: psycopg.AsyncConnection, name: str, dim: int) -> None:
    """Inside the caller's transaction: make the index hold ``name``/``dim`` vectors.

    First call: records the model, types ``chunks.embedding`` as ``vector(dim)`` and builds
    the HNSW index. Later calls: raise EmbeddingModelMismatch for another model (an empty index
    is silently re-typed instead).
    """
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    info = await read_index_info(conn)
    if info is not None and info.embedding_model == name and info.embedding_dim == dim:
        return
    if info is not None:
        cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM chunks)")
        row = await cur.fetchone()
        if row and row[0]:
            raise model_mismatch(info, name, dim)
        await conn.execute("DELETE FROM index_meta")
    await _drop_vector_indexes(conn)
    await conn.execute(
        sql.SQL("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({})").format(
            sql.Literal(int(dim))
        )
    )
    await conn.execute(
        sql.SQL(
            "CREATE INDEX {} ON chunks USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        ).format(sql.Identifier(HNSW_INDEX))
    )
    await conn.execute(
        "INSERT INTO index_meta (embedding_model, embedding_dim) VALUES (%s, %s)", (name, dim)
    )


async def country_indexes(conn: psycopg.AsyncConnection) -> set[str]:
    """Countries that have a partial HNSW index, from the catalogue (the source of truth)."""
    cur = await conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'chunks' AND indexname LIKE %s",
        (HNSW_INDEX.replace("_", r"\_") + r"\_%",),
    )
    prefix = len(HNSW_INDEX) + 1
    return {str(r[0])[prefix:].upper() for r in await cur.fetchall()}


async def _drop_vector_indexes(conn: psycopg.AsyncConnection) -> None:
    """Drop the HNSW index and every per-country one (before re-typing the column)."""
    names = [HNSW_INDEX, *(_country_index_name(c) for c in await country_indexes(conn))]
    for name in names:
        await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


def _country_index_name(country: str) -> str:
    return f"{HNSW_INDEX}_{country.lower()}"


def country_condition(country: str, column: str = "c.country") -> sql.Composable:
    """The filter for one country, with the code as a literal: the planner only uses a
    partial index when the query's condition matches its predicate as written, which a
    parameter cannot."""
    col = sql.SQL(column)
    return sql.SQL("({} = {} OR {} IS NULL)").format(col, sql.Literal(country), col)


async def build_country_indexes(
    conn: psycopg.AsyncConnection, min_chunks: int | None = None
) -> list[str]:
    """Build the missing partial HNSW indexes (see :meth:`Store.ensure_country_indexes`);
    returns the countries indexed now."""
    threshold = COUNTRY_INDEX_MIN_CHUNKS if min_chunks is None else min_chunks
    created: list[str] = []
    cur = await conn.execute("SELECT country, count(*) FROM chunks GROUP BY 1")
    counts = {r[0]: int(r[1]) for r in await cur.fetchall()}
    total = sum(counts.values())
    have = await country_indexes(conn)
    for country, n in sorted(counts.items(), key=lambda x: x[0] or ""):
        if country is None or country in have or n < threshold:
            continue
        if (n + counts.get(None, 0)) / total > _COUNTRY_INDEX_MAX_SHARE:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            await conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            await conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON chunks USING hnsw "
                    "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
                    "WHERE {}"
                ).format(
                    sql.Identifier(_country_index_name(country)),
                    country_condition(country, column="country"),
                )
            )
        created.append(country)
    if created:
        log.info("built per-country vector indexes for %s", ", ".join(created))
    return created


async def reset_index(conn: psycopg.AsyncConnection) -> None:
    """In one transaction: delete every document and chunk, forget the embedding model and
    drop the vector indexes, so the next ingest can use another model."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute("DELETE FROM documents")
        await conn.execute("DELETE FROM chunks")
        await conn.execute("DELETE FROM index_meta")
        await _drop_vector_indexes(conn)
        await conn.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")
