"""The chunk store: hybrid retrieval over pgvector (HNSW, cosine) and PostgreSQL full text.

Search runs a vector query and a full-text query, each filtered by country and type, and fuses
the two ranked lists by reciprocal rank (``1/(60 + rank)`` summed per chunk). Exact terms
(a product code, a rare word) come from full text; paraphrases come from the vectors.

The filter ``country="AR"`` returns documents of Argentina *and* documents with no country
(they apply everywhere), never another country's.

pgvector before 0.8 has no iterative index scan: a filtered HNSW query sees only
``hnsw.ef_search`` candidates and can return fewer rows than asked. So the share of chunks the
filter keeps is estimated (cached counts per country and type), ``ef_search`` is raised to match,
a filter that keeps few chunks is answered by an exact scan, and an HNSW answer that still comes
back short is redone exactly. Results are therefore complete, not just usually complete.

The index records its embedding model in ``index_meta``; writing or searching with another
model raises :class:`~proposals.errors.EmbeddingModelMismatch`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
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
_STATS_TTL_S = 30.0
# Most candidates one full-text pass ranks. A query whose words are in half the corpus would
# otherwise rank tens of thousands of rows (100+ ms at 100k chunks); such a query carries
# little lexical signal and is served by the vector half anyway.
_TEXT_CAP = 300
_ANY_CAP = 300


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
    await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(_HNSW_INDEX)))
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
        self._stats: tuple[float, dict[tuple[str | None, str], int]] | None = None
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
        vector_ids: list[tuple[int, float]] = []
        text_ids: list[tuple[int, float]] = []
        vector: np.ndarray | None = None
        if mode != "text" and self.embedder is None:
            raise InputError("vector search needs an embedder: Store(database, embedder)")
        # Model check and query embedding first: their errors reach the caller as they are.
        if mode != "text" and self.embedder and await self._index_info_checked() is not None:
            vector = (await self.embedder.embed([query]))[0]
        try:
            async with asyncio.TaskGroup() as tg:
                if vector is not None:
                    vtask = tg.create_task(self._vector_ranked(vector, fetch, cc, types))
                if mode != "vector":
                    # In hybrid mode the vectors already cover loose matches; the "any word" pass
                    # (costly for common words on a large corpus) only runs for text alone.
                    wanted = k if mode == "text" else 0
                    ttask = tg.create_task(self._text_ranked(query, fetch, cc, types, wanted))
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        if vector is not None:
            vector_ids = vtask.result()
        if mode != "vector":
            text_ids = ttask.result()
        if mode == "vector":
            ranked = vector_ids[:k]
        elif mode == "text":
            ranked = text_ids[:k]
        else:
            ranked = _fuse([vector_ids, text_ids])[:k]
        scores = dict(ranked)
        hits = await self.get_chunks([cid for cid, _ in ranked])
        return [h.model_copy(update={"score": scores[h.chunk_id]}) for h in hits]

    async def _vector_ranked(
        self, vector: np.ndarray, fetch: int, country: str | None, types: list[str] | None
    ) -> list[tuple[int, float]]:
        where, params = _filters(country, types)
        matching, total = await self._estimate(country, types)
        if matching == 0:
            return []
        exact = matching <= _EXACT_BELOW
        rows: list[Any] = []
        async with self.database.pool.connection() as conn:
            if not exact:
                ef = _EF_MIN if where is None else math.ceil(fetch * total / matching * 1.2)
                ef = max(_EF_MIN, min(_EF_MAX, ef, total))
                rows = await self._vector_query(
                    conn, vector, fetch, where, params, exact=False, ef=ef
                )
                # Short answer from a filtered HNSW scan: the candidates ran out before the
                # filter kept enough. Redo it exactly rather than return too little.
                exact = len(rows) < min(fetch, matching)
                if exact:
                    log.debug(
                        "filtered HNSW scan returned %d of %d rows (ef_search=%d); exact rescan",
                        len(rows),
                        min(fetch, matching),
                        ef,
                    )
            if exact:
                rows = await self._vector_query(conn, vector, fetch, where, params, exact=True)
        return [(int(r[0]), 1.0 - float(r[1])) for r in rows]

    async def _vector_query(
        self,
        conn: psycopg.AsyncConnection,
        vector: np.ndarray,
        fetch: int,
        where: sql.Composable | None,
        params: list[Any],
        *,
        exact: bool,
        ef: int = _EF_MIN,
    ) -> list[Any]:
        cond = where if where is not None else sql.SQL("TRUE")
        if exact:
            # MATERIALIZED keeps the planner from walking the HNSW index for this one.
            query = sql.SQL(
                "WITH f AS MATERIALIZED (SELECT id, embedding FROM chunks c WHERE {}) "
                "SELECT id, embedding <=> %s::vector AS d FROM f ORDER BY d LIMIT %s"
            ).format(cond)
        else:
            query = sql.SQL(
                "SELECT id, embedding <=> %s::vector AS d FROM chunks c WHERE {} "
                "ORDER BY embedding <=> %s::vector LIMIT %s"
            ).format(cond)
        async with conn.transaction():
            if not exact:
                await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
            args = [*params, vector, fetch] if exact else [vector, *params, vector, fetch]
            cur = await conn.execute(query, args)
            return await cur.fetchall()

    async def _text_ranked(
        self,
        query: str,
        fetch: int,
        country: str | None,
        types: list[str] | None,
        wanted: int,
    ) -> list[tuple[int, float]]:
        """Chunks containing every query word (websearch syntax: quotes for phrases, -word to
        exclude), by cover density. When fewer than ``wanted`` do, chunks containing *any* of
        the words fill the list up to ``fetch``. Each pass ranks a bounded number of candidates
        (``_TEXT_CAP``, ``_ANY_CAP``), so a query of common words costs bounded work on a large
        corpus."""
        where, params = _filters(country, types)
        cond = sql.SQL(" AND {}").format(where) if where is not None else sql.SQL("")
        all_sql = sql.SQL(
            "SELECT c.id, ts_rank_cd(c.tsv, q) + 1 AS rank FROM ("
            "  SELECT c.id, c.tsv FROM chunks c, websearch_to_tsquery('english', %s) q"
            "  WHERE c.tsv @@ q{} LIMIT %s) c, websearch_to_tsquery('english', %s) q "
            "ORDER BY rank DESC, c.id LIMIT %s"
        ).format(cond)
        any_sql = sql.SQL(
            "SELECT id, rank FROM ("
            "  SELECT c.id, ts_rank_cd(c.tsv, q) AS rank FROM ("
            "    SELECT c.id, c.tsv FROM chunks c, "
            "      to_tsquery('english', replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')) q"
            "    WHERE c.tsv @@ q{} LIMIT %s) c, "
            "  to_tsquery('english', replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')) q"
            ") r WHERE NOT (id = ANY(%s)) ORDER BY rank DESC, id LIMIT %s"
        ).format(cond)
        async with self.database.pool.connection() as conn, conn.transaction():
            # With the LIMIT inside, the planner may bet on a sequential scan finding enough
            # matches early; for a selective query that reads the whole table. The GIN index
            # is always the right way in.
            await conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            cur = await conn.execute(all_sql, [query, *params, _TEXT_CAP, query, fetch])
            rows = [(int(r[0]), float(r[1])) for r in await cur.fetchall()]
            if len(rows) < wanted:
                cur = await conn.execute(
                    any_sql,
                    [query, *params, _ANY_CAP, query, [r[0] for r in rows], fetch - len(rows)],
                )
                rows += [(int(r[0]), float(r[1])) for r in await cur.fetchall()]
        return rows

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

    async def _estimate(self, country: str | None, types: list[str] | None) -> tuple[int, int]:
        """(chunks the filter keeps, all chunks), from counts cached for a few seconds."""
        now = time.monotonic()
        if self._stats is None or now - self._stats[0] > _STATS_TTL_S:
            async with self.database.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT country, doc_type, count(*) FROM chunks GROUP BY 1, 2"
                )
                counts = {(r[0], r[1]): int(r[2]) for r in await cur.fetchall()}
            self._stats = (now, counts)
        counts = self._stats[1]
        total = sum(counts.values())
        matching = sum(
            n
            for (cc, dt), n in counts.items()
            if (country is None or cc is None or cc == country) and (types is None or dt in types)
        )
        return matching, total

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
        hits = []
        for cid in dict.fromkeys(wanted):
            r = rows.get(cid)
            if r is None:
                continue
            citation = Citation(
                chunk_id=r[0],
                document_id=r[4],
                title=r[5],
                path=r[6],
                page=r[3],
                section=r[2],
                country=r[7],
                doc_type=r[8],
            )
            hits.append(SearchHit(chunk_id=r[0], text=r[1], score=0.0, citation=citation))
        return hits

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
                await conn.execute(
                    sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(_HNSW_INDEX))
                )
                await conn.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")
        except psycopg.Error as exc:
            raise DatabaseError(f"could not reset the index: {exc}") from exc
        self.invalidate()


def _filters(
    country: str | None, types: list[str] | None
) -> tuple[sql.Composable | None, list[Any]]:
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if country is not None:
        parts.append(sql.SQL("(c.country = %s OR c.country IS NULL)"))
        params.append(country)
    if types:
        parts.append(sql.SQL("c.doc_type = ANY(%s)"))
        params.append(list(types))
    if not parts:
        return None, params
    return sql.SQL(" AND ").join(parts), params


def _fuse(lists: Sequence[Sequence[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each list adds ``1/(RRF_K + rank)`` (rank from 1) per id."""
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, (cid, _) in enumerate(ranked, start=1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


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
