"""The :class:`Store` facade: search, document administration and index management over one
database, with cached filter statistics, and psycopg errors translated to ``DatabaseError``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from ..config import DEFAULT_TENANT, Settings
from ..db import Database, database_errors
from ..embeddings import Embedder, embedder_from_settings
from ..errors import InputError
from ..vocabulary import normalize_country, normalize_doc_type
from . import _documents, _schema, _search
from ._models import DocumentInfo, IndexInfo, SearchHit, SearchMode

__all__ = ["Store", "search"]

log = logging.getLogger("proposals.store")

_STATS_TTL_S = 30.0


class Store:
    """Chunks and documents in PostgreSQL, searched by vector, by text, or both.

    ``embedder`` must be the model the index was built with; it is only needed for
    ``search`` in ``vector`` or ``hybrid`` mode. Every read and delete sees only
    ``tenant``'s documents and chunks (:meth:`for_tenant` gives another tenant's view of the
    same store). Database failures raise :class:`~proposals.errors.DatabaseError`.
    """

    def __init__(
        self, database: Database, embedder: Embedder | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        self.database = database
        self.embedder = embedder
        self.tenant = tenant
        self._cache = _Cache()

    def for_tenant(self, tenant: str) -> Store:
        """The same store seen by ``tenant`` (same database and embedder)."""
        if tenant == self.tenant:
            return self
        view = Store(self.database, self.embedder, tenant=tenant)
        view._cache = self._cache  # one set of statistics for every tenant's view
        return view

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
        of these types. ``mode``: ``hybrid`` (both halves fused), ``vector`` or ``text``
        alone. Scores: cosine similarity plus the weighted text score (hybrid), cosine
        similarity (vector), or the sum of the matched terms' weights (text); see
        :mod:`proposals.store._lexical`.
        """
        hits = await self.search_many([query], k, country=country, doc_types=doc_types, mode=mode)
        return hits[0]

    async def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        country: str | None = None,
        doc_types: Sequence[str] | None = None,
        mode: SearchMode = "hybrid",
    ) -> list[list[SearchHit]]:
        """:meth:`search` for each of ``queries`` under the same filter, in one statement (one
        plan, one round trip): each query gets the hits it gets alone for the same query
        vector. The queries are embedded in one call of the embedder (a model's vectors can
        depend slightly on the batch; embed them beforehand through a
        :class:`~proposals.embeddings.CachingEmbedder` to choose how)."""
        if not queries:
            return []
        if any(not q.strip() for q in queries):
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
        vectors: np.ndarray | None = None
        # Model check and query embedding first: their errors reach the caller as they are.
        if mode != "text" and self.embedder and await self._index_info_checked() is not None:
            vectors = await self.embedder.embed(list(queries))
        plan = await self._plan(cc, types, fetch) if vectors is not None else None
        if mode == "vector" and (plan is None or plan.matching == 0):
            return [[] for _ in queries]
        if plan is not None and plan.matching == 0:
            plan, vectors = None, None  # nothing the vector half could find
        fused = mode if vectors is not None else "text"
        total = (await self._stats_cached()).total if fused != "vector" else 0
        common = (fused, k, fetch, cc, types, self.tenant, total)
        out: list[list[SearchHit]] = []
        with database_errors("search the chunks"):
            async with self.database.pool.connection() as conn:
                if len(queries) == 1:
                    vector = vectors[0] if vectors is not None else None
                    st, args = _search.search_statement(queries[0], vector, plan, *common)
                    per_query = [await _search.run_search(conn, st, args, plan)]
                else:
                    first = vectors[0] if vectors is not None else None
                    inner, args = _search.search_statement(
                        "", first, plan, *common, refs=_search.BATCH_REFS
                    )
                    st, args = _search.batch_statement(list(queries), vectors, inner, args)
                    rows = await _search.run_search(conn, st, args, plan)
                    per_query = [
                        [r[1:] for r in rows if r[0] == n + 1] for n in range(len(queries))
                    ]
                for i, rows in enumerate(per_query):
                    vector = vectors[i] if vectors is not None else None
                    rows = await self._widen(conn, queries[i], vector, plan, rows, common)
                    out.append([_documents.hit_from_row((r[0], *r[3:]), float(r[1])) for r in rows])
        return out

    async def _widen(
        self,
        conn: psycopg.AsyncConnection[Any],
        query: str,
        vector: np.ndarray | None,
        plan: _search.Plan | None,
        rows: list[Any],
        common: tuple[Any, ...],
    ) -> list[Any]:
        """``rows``, or after a short answer from a filtered HNSW scan (the candidates ran out
        before the filter kept enough), the search redone with a wider beam (still far cheaper
        than reading every filtered row), then exactly, rather than return too little."""
        fetch = common[2]
        while plan is not None and not plan.exact and _found(rows) < min(fetch, plan.matching):
            wider = plan.wider()
            log.debug(
                "filtered HNSW scan returned %d of %d rows (ef_search=%d); %s",
                _found(rows),
                min(fetch, plan.matching),
                plan.ef,
                "exact rescan" if wider.exact else f"retry with ef_search={wider.ef}",
            )
            plan = wider
            st, args = _search.search_statement(query, vector, plan, *common)
            rows = await _search.run_search(conn, st, args, plan)
        return rows

    async def _plan(self, country: str | None, types: list[str] | None, fetch: int) -> _search.Plan:
        return _search.plan_search(await self._stats_cached(), country, types, fetch, self.tenant)

    async def _index_info_checked(self) -> IndexInfo | None:
        now = time.monotonic()
        info: IndexInfo | None
        cached = self._cache.info
        if cached is not None and now - cached[0] < _STATS_TTL_S:
            info = cached[1]
        else:
            with database_errors("read the index's embedding model"):
                async with self.database.pool.connection() as conn:
                    info = await _schema.read_index_info(conn)
            self._cache.info = (now, info) if info is not None else None
        if (
            info is not None
            and self.embedder is not None
            and info.embedding_model != self.embedder.name
        ):
            raise _schema.model_mismatch(info, self.embedder.name, None)
        return info

    async def _stats_cached(self) -> _search.Stats:
        """Chunk counts and country indexes, cached for a few seconds: exact enough to size
        ``ef_search``, and a short answer is redone exactly anyway."""
        now = time.monotonic()
        cached = self._cache.stats
        if cached is None or now - cached[0] > _STATS_TTL_S:
            with database_errors("count the chunks"):
                async with self.database.pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT tenant, country, doc_type, count(*) FROM chunks GROUP BY 1, 2, 3"
                    )
                    counts = {(r[0], r[1], r[2]): int(r[3]) for r in await cur.fetchall()}
                    names = await _schema.country_indexes(conn)
            cached = (now, _search.Stats(counts, frozenset(names)))
            self._cache.stats = cached
        return cached[1]

    def invalidate(self) -> None:
        """Forget cached chunk counts and index model (call after writing elsewhere)."""
        self._cache.stats = None
        self._cache.info = None

    # -- documents -------------------------------------------------------------------------

    async def get_chunks(self, ids: Sequence[int]) -> list[SearchHit]:
        """The chunks with these ids, in the order given (unknown ids are left out); score 0."""
        with database_errors("read chunks"):
            async with self.database.pool.connection() as conn:
                return await _documents.get_chunks(conn, ids, self.tenant)

    async def list_documents(self) -> list[DocumentInfo]:
        """Every document of the tenant, ordered by country (global first), type and path."""
        with database_errors("list the documents"):
            async with self.database.pool.connection() as conn:
                return await _documents.list_documents(conn, self.tenant)

    async def remove_document(self, document: int | str) -> str | None:
        """Delete a document of the tenant (by id or stored path) and its chunks; its stored
        path, or None if not found."""
        with database_errors("remove the document"):
            async with self.database.pool.connection() as conn:
                removed = await _documents.remove_document(conn, document, self.tenant)
        self.invalidate()
        return removed

    # -- index -----------------------------------------------------------------------------

    async def index_info(self) -> IndexInfo | None:
        """The embedding model the index holds (None before the first ingest)."""
        with database_errors("read the index's embedding model"):
            async with self.database.pool.connection() as conn:
                return await _schema.read_index_info(conn)

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
        with database_errors("build the per-country vector indexes"):
            async with self.database.pool.connection() as conn:
                created = await _schema.build_country_indexes(conn, min_chunks)
        if created:
            self.invalidate()
        return created

    async def reset_index(self) -> None:
        """Delete every document and chunk and forget the embedding model, so the next
        ingest can use another one."""
        with database_errors("reset the index"):
            async with self.database.pool.connection() as conn:
                await _schema.reset_index(conn)
        self.invalidate()


def _found(rows: list[Any]) -> int:
    """How many rows the vector half of a search found (its third column)."""
    return int(rows[0][2]) if rows else 0


@dataclass
class _Cache:
    """Chunk statistics and the index's model, read at most every ``_STATS_TTL_S``."""

    stats: tuple[float, _search.Stats] | None = None
    info: tuple[float, IndexInfo] | None = None


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
