"""The chunk store: hybrid retrieval over pgvector (HNSW, cosine) and PostgreSQL full text.

Search ranks chunks by vector and by full text, each filtered by country and type, and fuses
the two ranked lists by reciprocal rank (``1/(60 + rank)`` summed per chunk). Exact terms
(a product code, a rare word) come from full text; paraphrases come from the vectors. Both
halves, the fusion and the citations are one SQL statement: one pool checkout and one round
trip per search, which matters when a run issues hundreds of them.

The filter ``country="AR"`` returns documents of Argentina *and* documents with no country
(they apply everywhere), never another country's.

pgvector before 0.8 has no iterative index scan: a filtered HNSW query sees only
``hnsw.ef_search`` candidates and can return fewer rows than asked. So the share of chunks the
filter keeps is estimated (cached counts per country and type), ``ef_search`` is raised to match,
a filter that keeps few chunks is answered by an exact scan, and an HNSW answer that still comes
back short is retried with a wider beam, then exactly. Results are therefore complete, not just
usually complete. A large country gets its own partial HNSW index (its chunks and the global
ones), so its filter needs no over-fetch at all (:meth:`Store.ensure_country_indexes`).

The index records its embedding model in ``index_meta``; writing or searching with another
model raises :class:`~proposals.errors.EmbeddingModelMismatch`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from .config import Settings
from .db import Database
from .embeddings import Embedder, embedder_from_settings
from .errors import DatabaseError, EmbeddingModelMismatch, InputError
from .ingest._countries import normalize_country
from .ingest._model import normalize_doc_type

__all__ = [
    "COUNTRY_INDEX_MIN_CHUNKS",
    "RRF_K",
    "Citation",
    "DocumentInfo",
    "IndexInfo",
    "SearchHit",
    "SearchMode",
    "Store",
    "check_index_model",
    "ensure_index",
    "read_index_info",
    "search",
]

log = logging.getLogger(__name__)

RRF_K = 60
"""The ``k`` of reciprocal rank fusion: a chunk's score is ``Σ 1/(RRF_K + rank)``."""
SearchMode = Literal["hybrid", "vector", "text"]

_HNSW_INDEX = "chunks_embedding_hnsw"
_LOCK_KEY = 0x70726F71  # serialises first-time typing of the embedding column
_EXACT_BELOW = 4000  # filters keeping fewer chunks than this are answered by an exact scan
_EF_MIN, _EF_MAX = 40, 1000
# ef_search over the expected need: the filter's share near the query varies (documents of a
# type cluster by topic), and every short answer costs a second scan.
_EF_MARGIN = 1.6
_STATS_TTL_S = 30.0
# Most candidates one full-text pass ranks. A query whose words are in half the corpus would
# otherwise rank tens of thousands of rows (100+ ms at 100k chunks); such a query carries
# little lexical signal and is served by the vector half anyway.
_TEXT_CAP = 300
_ANY_CAP = 300
COUNTRY_INDEX_MIN_CHUNKS = 10_000
"""A country with this many chunks gets its own partial HNSW index (see
:meth:`Store.ensure_country_indexes`); below it, exact scans and a raised ``ef_search`` on the
global index are cheap enough."""
_COUNTRY_INDEX_MAX_SHARE = 0.5


class Citation(BaseModel):
    """Where a chunk comes from; enough for a reader to find the passage."""

    model_config = ConfigDict(frozen=True)

    chunk_id: int
    document_id: int
    title: str
    path: str
    page: int | None = None
    section: str | None = None
    country: str | None = None
    doc_type: str

    def describe(self) -> str:
        """One line for people: ``[#12] Title — section, p. 3 (AR, official) path``."""
        where = ", ".join(x for x in (self.section, f"p. {self.page}" if self.page else None) if x)
        scope = f"{self.country or 'global'}, {self.doc_type}"
        return (
            f"[#{self.chunk_id}] {self.title}{' — ' + where if where else ''} ({scope}) {self.path}"
        )


class SearchHit(BaseModel):
    """One retrieved chunk: its text, score (higher is better) and citation."""

    model_config = ConfigDict(frozen=True)

    chunk_id: int
    text: str
    score: float
    citation: Citation


class DocumentInfo(BaseModel):
    """A stored document and how many chunks it has."""

    id: int
    path: str
    title: str
    doc_type: str
    country: str | None
    content_hash: str
    embedding_model: str
    chunks: int
    tokens: int
    updated_at: datetime


class IndexInfo(BaseModel):
    """The embedding model the index was built with."""

    embedding_model: str
    embedding_dim: int


# --- index model bookkeeping ---------------------------------------------------------------------


async def read_index_info(conn: psycopg.AsyncConnection) -> IndexInfo | None:
    """The model recorded for the index, or None before the first ingest."""
    cur = await conn.execute("SELECT embedding_model, embedding_dim FROM index_meta")
    row = await cur.fetchone()
    return IndexInfo(embedding_model=row[0], embedding_dim=row[1]) if row else None


def _mismatch(held: IndexInfo, name: str, dim: int | None) -> EmbeddingModelMismatch:
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
            raise _mismatch(info, name, None)
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
            raise _mismatch(info, name, dim)
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
        ).format(sql.Identifier(_HNSW_INDEX))
    )
    await conn.execute(
        "INSERT INTO index_meta (embedding_model, embedding_dim) VALUES (%s, %s)", (name, dim)
    )


async def _country_indexes(conn: psycopg.AsyncConnection) -> set[str]:
    """Countries that have a partial HNSW index, from the catalogue (the source of truth)."""
    cur = await conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = 'chunks' AND indexname LIKE %s",
        (_HNSW_INDEX.replace("_", r"\_") + r"\_%",),
    )
    prefix = len(_HNSW_INDEX) + 1
    return {str(r[0])[prefix:].upper() for r in await cur.fetchall()}


async def _drop_vector_indexes(conn: psycopg.AsyncConnection) -> None:
    """Drop the HNSW index and every per-country one (before re-typing the column)."""
    names = [_HNSW_INDEX, *(_country_index_name(c) for c in await _country_indexes(conn))]
    for name in names:
        await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


# --- the store ---------------------------------------------------------------------------------

_HIT_SQL = """
SELECT c.id, c.text, c.section, c.page, d.id, d.title, d.path, d.country, d.doc_type
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.id = ANY(%s)
"""


class Store:
    """Chunks and documents in PostgreSQL, searched by vector, by text, or both.

    ``embedder`` must be the model the index was built with; it is only needed for
    ``search`` in ``vector`` or ``hybrid`` mode.
    """

    def __init__(self, database: Database, embedder: Embedder | None = None) -> None:
        self.database = database
        self.embedder = embedder
        self._stats: tuple[float, _Stats] | None = None
        self._info: tuple[float, IndexInfo] | None = None

    # -- search ----------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        k: int = 10,
        *,
        country: str | None = None,
        doc_types: Sequence[str] | None = None,
        mode: SearchMode = "hybrid",
    ) -> list[SearchHit]:
        """The ``k`` chunks best matching ``query``.

        ``country``: that country's documents plus those with no country. ``doc_types``: any
        of these types. ``mode``: ``hybrid`` (reciprocal rank fusion of both), ``vector`` or
        ``text`` alone. Scores: fused RRF score, cosine similarity, or ``ts_rank_cd``.
        """
        if not query.strip():
            raise InputError("the search query is empty")
        if k < 1:
            raise InputError("k must be at least 1")
        if mode not in ("hybrid", "vector", "text"):
            raise InputError(f"unknown search mode {mode!r}")
        cc = normalize_country(country)
        types = [t for t in (normalize_doc_type(t) for t in doc_types or ()) if t] or None
        fetch = max(k * 2, 20) if mode == "hybrid" else k
        if mode != "text" and self.embedder is None:
            raise InputError("vector search needs an embedder: Store(database, embedder)")
        vector: np.ndarray | None = None
        # Model check and query embedding first: their errors reach the caller as they are.
        if mode != "text" and self.embedder and await self._index_info_checked() is not None:
            vector = (await self.embedder.embed([query]))[0]
        plan = await self._plan(cc, types, fetch) if vector is not None else None
        if mode == "vector" and (plan is None or plan.matching == 0):
            return []
        if plan is not None and plan.matching == 0:
            plan, vector = None, None  # nothing the vector half could find
        fused = mode if vector is not None else "text"
        async with self.database.pool.connection() as conn:
            rows, from_vectors = await self._run_search(
                conn, query, vector, plan, fused, k, fetch, cc, types
            )
            while plan is not None and not plan.exact and from_vectors < min(fetch, plan.matching):
                # Short answer from a filtered HNSW scan: the candidates ran out before the
                # filter kept enough. Retry with a wider beam (still far cheaper than reading
                # every filtered row), then exactly, rather than return too little.
                wider = min(_EF_MAX, plan.ef * 4)
                log.debug(
                    "filtered HNSW scan returned %d of %d rows (ef_search=%d); %s",
                    from_vectors,
                    min(fetch, plan.matching),
                    plan.ef,
                    "exact rescan" if wider == plan.ef else f"retry with ef_search={wider}",
                )
                plan = _Plan(plan.matching, exact=wider == plan.ef, ef=wider)
                rows, from_vectors = await self._run_search(
                    conn, query, vector, plan, fused, k, fetch, cc, types
                )
        hits = [_hit((r[0], *r[3:]), float(r[1])) for r in rows]
        if mode == "text" and len(hits) < k:
            hits += await self._any_word_hits(query, k - len(hits), cc, types, hits)
        return hits

    async def _plan(self, country: str | None, types: list[str] | None, fetch: int) -> _Plan:
        """How to run the vector half: exactly for small filtered sets, otherwise HNSW with an
        ``ef_search`` large enough that the filter still leaves ``fetch`` candidates. With a
        country index the candidates come from that country's chunks only, so only the type
        filter thins them out."""
        stats = await self._stats_cached()
        matching = stats.count(country, types)
        if matching <= _EXACT_BELOW:
            return _Plan(matching, exact=True)
        if country is not None and country in stats.country_indexes:
            population = stats.count(country, None)
        elif country is None and types is None:
            population = matching
        else:
            population = stats.total
        ef = math.ceil(fetch * population / matching * _EF_MARGIN)
        return _Plan(matching, exact=False, ef=max(_EF_MIN, min(_EF_MAX, ef, stats.total)))

    async def _run_search(
        self,
        conn: psycopg.AsyncConnection,
        query: str,
        vector: np.ndarray | None,
        plan: _Plan | None,
        mode: SearchMode,
        k: int,
        fetch: int,
        country: str | None,
        types: list[str] | None,
    ) -> tuple[list[Any], int]:
        """One statement for both halves, the fusion and the hits' citations: one pool
        checkout and one round trip (settings, query and commit are pipelined)."""
        statement, args = _search_statement(query, vector, plan, mode, k, fetch, country, types)
        ef = plan.ef if plan is not None else _EF_MIN
        async with conn.pipeline():
            async with conn.transaction():
                # With a LIMIT inside, the planner may bet on a sequential scan finding enough
                # full-text matches early; for a selective query that reads the whole table.
                # The GIN index is always the right way in.
                await conn.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true), "
                    "set_config('enable_seqscan', 'off', true)",
                    (str(ef),),
                )
                cur = await conn.execute(statement, args)
            rows = await cur.fetchall()
        return rows, (int(rows[0][2]) if rows else 0)

    async def _any_word_hits(
        self,
        query: str,
        wanted: int,
        country: str | None,
        types: list[str] | None,
        have: list[SearchHit],
    ) -> list[SearchHit]:
        """Text mode only: when fewer than ``k`` chunks contain every query word, chunks
        containing *any* of them fill the list, ranked below all of those, from a bounded
        number of candidates (``_ANY_CAP``). In hybrid mode the vectors already cover loose
        matches, and this pass is costly for common words on a large corpus."""
        any_sql = sql.SQL(
            "SELECT id, rank FROM ("
            "  SELECT c.id, ts_rank_cd(c.tsv, q, 32) AS rank FROM ("
            "    SELECT c.id, c.tsv FROM chunks c, "
            "      to_tsquery('english', replace(plainto_tsquery('english', %(q)s)::text, ' & ', ' | ')) q"
            "    WHERE c.tsv @@ q AND {} LIMIT %(cap)s) c, "
            "  to_tsquery('english', replace(plainto_tsquery('english', %(q)s)::text, ' & ', ' | ')) q"
            ") r WHERE NOT (id = ANY(%(have)s)) ORDER BY rank DESC, id LIMIT %(n)s"
        ).format(_filters(country, types))
        async with self.database.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            args = {"q": query, "types": types, "cap": _ANY_CAP, "n": wanted}
            cur = await conn.execute(any_sql, {**args, "have": [h.chunk_id for h in have]})
            ranked = [(int(r[0]), float(r[1])) for r in await cur.fetchall()]
        scores = dict(ranked)
        hits = await self.get_chunks([cid for cid, _ in ranked])
        return [h.model_copy(update={"score": scores[h.chunk_id]}) for h in hits]

    async def _index_info_checked(self) -> IndexInfo | None:
        now = time.monotonic()
        info: IndexInfo | None
        if self._info is not None and now - self._info[0] < _STATS_TTL_S:
            info = self._info[1]
        else:
            async with self.database.pool.connection() as conn:
                info = await read_index_info(conn)
            self._info = (now, info) if info is not None else None
        if (
            info is not None
            and self.embedder is not None
            and (info.embedding_model != self.embedder.name)
        ):
            raise _mismatch(info, self.embedder.name, None)
        return info

    async def _stats_cached(self) -> _Stats:
        """Chunk counts and country indexes, cached for a few seconds: exact enough to size
        ``ef_search``, and a short answer is redone exactly anyway."""
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > _STATS_TTL_S:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT country, doc_type, count(*) FROM chunks GROUP BY 1, 2"
                )
                counts = {(r[0], r[1]): int(r[2]) for r in await cur.fetchall()}
                names = await _country_indexes(conn)
            self._stats = (now, _Stats(counts, frozenset(names)))
        return self._stats[1]

    def invalidate(self) -> None:
        """Forget cached chunk counts and index model (call after writing elsewhere)."""
        self._stats = None
        self._info = None

    # -- reading & housekeeping ------------------------------------------------------------------

    async def get_chunks(self, ids: Sequence[int]) -> list[SearchHit]:
        """The chunks with these ids, in the order given (unknown ids are left out); score 0."""
        wanted = [int(i) for i in ids]
        if not wanted:
            return []
        async with self.database.pool.connection() as conn:
            cur = await conn.execute(_HIT_SQL, (wanted,))
            rows = {r[0]: r for r in await cur.fetchall()}
        return [_hit(rows[cid], 0.0) for cid in dict.fromkeys(wanted) if cid in rows]

    async def ensure_country_indexes(self, min_chunks: int | None = None) -> list[str]:
        """Build a partial HNSW index for every country with at least ``min_chunks`` chunks
        (default ``COUNTRY_INDEX_MIN_CHUNKS``) that has none yet; returns the countries
        indexed now.

        Why: pgvector 0.6 has no iterative scan, so a filtered HNSW search must raise
        ``ef_search`` in proportion to what the filter drops, and pays for it on every query.
        An index over one country's chunks plus the global ones (what a country filter keeps)
        serves that filter with no over-fetch. Countries whose filter keeps over half the
        corpus gain little and are skipped. Ingest calls this after writing; the build blocks
        writes to ``chunks`` (not searches) while it runs.
        """
        threshold = COUNTRY_INDEX_MIN_CHUNKS if min_chunks is None else min_chunks
        created: list[str] = []
        try:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute("SELECT country, count(*) FROM chunks GROUP BY 1")
                counts = {r[0]: int(r[1]) for r in await cur.fetchall()}
                total = sum(counts.values())
                have = await _country_indexes(conn)
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
                                _country_condition(country, column="country"),
                            )
                        )
                    created.append(country)
        except psycopg.Error as exc:
            raise DatabaseError(f"could not build the per-country vector indexes: {exc}") from exc
        if created:
            log.info("built per-country vector indexes for %s", ", ".join(created))
            self.invalidate()
        return created

    async def list_documents(self) -> list[DocumentInfo]:
        """Every document, ordered by country (global first), type and path."""
        async with self.database.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.id, d.path, d.title, d.doc_type, d.country, d.content_hash, "
                "d.embedding_model, count(c.id), coalesce(sum(c.token_count), 0), d.updated_at "
                "FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
                "GROUP BY d.id ORDER BY d.country NULLS FIRST, d.doc_type, d.path"
            )
            rows = await cur.fetchall()
        return [
            DocumentInfo(
                id=r[0],
                path=r[1],
                title=r[2],
                doc_type=r[3],
                country=r[4],
                content_hash=r[5],
                embedding_model=r[6],
                chunks=r[7],
                tokens=r[8],
                updated_at=r[9],
            )
            for r in rows
        ]

    async def remove_document(self, document: int | str) -> bool:
        """Delete a document (by id or stored path) and its chunks. False if not found."""
        column = "id" if isinstance(document, int) else "path"
        async with self.database.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("DELETE FROM documents WHERE {} = %s").format(sql.Identifier(column)),
                (document,),
            )
            removed = cur.rowcount > 0
        self.invalidate()
        return removed

    async def index_info(self) -> IndexInfo | None:
        """The embedding model the index holds (None before the first ingest)."""
        async with self.database.pool.connection() as conn:
            return await read_index_info(conn)

    async def reset_index(self) -> None:
        """Delete every document and chunk and forget the embedding model, so the next
        ingest can use another one."""
        try:
            async with self.database.pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                await conn.execute("DELETE FROM documents")
                await conn.execute("DELETE FROM chunks")
                await conn.execute("DELETE FROM index_meta")
                await _drop_vector_indexes(conn)
                await conn.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")
        except psycopg.Error as exc:
            raise DatabaseError(f"could not reset the index: {exc}") from exc
        self.invalidate()


async def search(
    query: str,
    *,
    settings: Settings,
    k: int = 10,
    country: str | None = None,
    doc_types: Sequence[str] | None = None,
    mode: SearchMode = "hybrid",
    database: Database | None = None,
    embedder: Embedder | None = None,
) -> list[SearchHit]:
    """Search the corpus named by ``settings`` (opens and closes the database unless given).

    See :meth:`Store.search` for the arguments.
    """
    embedder = embedder or embedder_from_settings(settings)
    if database is not None:
        return await Store(database, embedder).search(
            query, k, country=country, doc_types=doc_types, mode=mode
        )
    async with await Database.open(settings) as db:
        return await Store(db, embedder).search(
            query, k, country=country, doc_types=doc_types, mode=mode
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How the vector half runs: ``matching`` chunks pass the filter; ``exact`` scans them
    all, otherwise HNSW with ``ef_search = ef``."""

    matching: int
    exact: bool
    ef: int = _EF_MIN


@dataclass(frozen=True, slots=True)
class _Stats:
    """Chunk counts per (country, doc_type) and the countries that have their own index."""

    counts: dict[tuple[str | None, str], int]
    country_indexes: frozenset[str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, country: str | None, types: list[str] | None) -> int:
        return sum(
            n
            for (cc, dt), n in self.counts.items()
            if (country is None or cc is None or cc == country) and (types is None or dt in types)
        )


def _country_index_name(country: str) -> str:
    return f"{_HNSW_INDEX}_{country.lower()}"


def _country_condition(country: str, column: str = "c.country") -> sql.Composable:
    """The filter for one country, with the code as a literal: the planner only uses a
    partial index when the query's condition matches its predicate as written, which a
    parameter cannot."""
    col = sql.SQL(column)
    return sql.SQL("({} = {} OR {} IS NULL)").format(col, sql.Literal(country), col)


def _filters(country: str | None, types: list[str] | None) -> sql.Composable:
    """The WHERE condition on ``chunks c``; doc types come from the ``types`` parameter."""
    parts: list[sql.Composable] = []
    if country is not None:
        parts.append(_country_condition(country))
    if types:
        parts.append(sql.SQL("c.doc_type = ANY(%(types)s)"))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")


def _search_statement(
    query: str,
    vector: np.ndarray | None,
    plan: _Plan | None,
    mode: SearchMode,
    k: int,
    fetch: int,
    country: str | None,
    types: list[str] | None,
) -> tuple[sql.Composed, dict[str, Any]]:
    """The whole search as one statement: ranked CTEs ``v`` (vectors) and ``t`` (every query
    word, by cover density, over at most ``_TEXT_CAP`` candidates), fused into ``s`` by
    reciprocal rank, joined to the citations. The third column is how many rows ``v`` found,
    so a short filtered HNSW answer can be detected."""
    cond = _filters(country, types)
    ctes: list[sql.Composable] = []
    if vector is not None:
        assert plan is not None
        if plan.exact:
            # MATERIALIZED keeps the planner from walking the HNSW index for this one.
            ctes.append(
                sql.SQL(
                    "f AS MATERIALIZED (SELECT c.id, c.embedding FROM chunks c WHERE {}), "
                    "v AS (SELECT id, d, row_number() OVER (ORDER BY d, id) AS r FROM ("
                    "SELECT id, embedding <=> %(vec)s::vector AS d FROM f "
                    "ORDER BY d LIMIT %(fetch)s) x)"
                ).format(cond)
            )
        else:
            ctes.append(
                sql.SQL(
                    "v AS (SELECT id, d, row_number() OVER (ORDER BY d, id) AS r FROM ("
                    "SELECT c.id, c.embedding <=> %(vec)s::vector AS d FROM chunks c WHERE {} "
                    "ORDER BY c.embedding <=> %(vec)s::vector LIMIT %(fetch)s) x)"
                ).format(cond)
            )
    if mode != "vector":
        ctes.append(
            sql.SQL(
                "t AS (SELECT id, rank, row_number() OVER (ORDER BY rank DESC, id) AS r FROM ("
                "SELECT m.id, ts_rank_cd(m.tsv, q, 32) + 1 AS rank FROM ("
                "SELECT c.id, c.tsv FROM chunks c, websearch_to_tsquery('english', %(q)s) q "
                "WHERE c.tsv @@ q AND {} LIMIT %(cap)s) m, websearch_to_tsquery('english', %(q)s) q "
                "ORDER BY rank DESC, m.id LIMIT %(fetch)s) y)"
            ).format(cond)
        )
    fuse: sql.Composable
    if mode == "hybrid":
        fuse = sql.SQL(
            "s AS (SELECT id, sum(1.0::float8 / ({} + r)) AS score FROM ("
            "SELECT id, r FROM v UNION ALL SELECT id, r FROM t) u "
            "GROUP BY id ORDER BY score DESC, id LIMIT %(k)s)"
        ).format(sql.Literal(RRF_K))
    elif mode == "vector":
        fuse = sql.SQL("s AS (SELECT id, 1 - d AS score FROM v ORDER BY r LIMIT %(k)s)")
    else:
        fuse = sql.SQL("s AS (SELECT id, rank AS score FROM t ORDER BY r LIMIT %(k)s)")
    statement = sql.SQL(
        "WITH {}, {} SELECT s.id, s.score, {}, c.text, c.section, c.page, d.id, d.title, "
        "d.path, d.country, d.doc_type FROM s JOIN chunks c ON c.id = s.id "
        "JOIN documents d ON d.id = c.document_id ORDER BY s.score DESC, s.id"
    ).format(
        sql.SQL(", ").join(ctes),
        fuse,
        sql.SQL("(SELECT count(*) FROM v)" if vector is not None else "0"),
    )
    args: dict[str, Any] = {"q": query, "k": k, "fetch": fetch, "cap": _TEXT_CAP, "types": types}
    if vector is not None:
        args["vec"] = vector
    return statement, args


def _hit(row: Sequence[Any], score: float) -> SearchHit:
    """A hit from a row laid out as ``_HIT_SQL``'s."""
    citation = Citation(
        chunk_id=row[0],
        document_id=row[4],
        title=row[5],
        path=row[6],
        page=row[3],
        section=row[2],
        country=row[7],
        doc_type=row[8],
    )
    return SearchHit(chunk_id=row[0], text=row[1], score=score, citation=citation)
