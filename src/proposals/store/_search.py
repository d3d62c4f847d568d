"""Hybrid search as SQL: how the vector half runs (exact or HNSW, and with which
``ef_search``), and the one statement that ranks, fuses and cites."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ._documents import HIT_COLUMNS
from ._lexical import (
    PHRASE_WEIGHT,
    TEXT_CANDIDATES,
    TEXT_POWER,
    TEXT_WEIGHT,
    fusion_cte,
    text_ctes,
)
from ._models import SearchMode
from ._schema import country_condition

__all__ = [
    "BATCH_REFS",
    "Plan",
    "Stats",
    "batch_statement",
    "plan_search",
    "run_search",
    "search_statement",
]

_EXACT_BELOW = 4000  # filters keeping fewer chunks than this are answered by an exact scan
_EF_MIN, _EF_MAX = 40, 1000
# ef_search over the expected need: the filter's share near the query varies (documents of a
# type cluster by topic), and every short answer costs a second scan.
_EF_MARGIN = 1.6


@dataclass(frozen=True, slots=True)
class Plan:
    """How the vector half runs: ``matching`` chunks pass the filter; ``exact`` scans them
    all, otherwise HNSW with ``ef_search = ef``."""

    matching: int
    exact: bool
    ef: int = _EF_MIN

    def wider(self) -> Plan:
        """The retry after a short HNSW answer: a four times wider beam, then exact."""
        ef = min(_EF_MAX, self.ef * 4)
        return Plan(self.matching, exact=ef == self.ef, ef=ef)


@dataclass(frozen=True, slots=True)
class Stats:
    """Chunk counts per (tenant, country, doc_type) and the countries that have their own
    index (the vector indexes hold every tenant's chunks)."""

    counts: dict[tuple[str, str | None, str], int]
    country_indexes: frozenset[str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, country: str | None, types: list[str] | None, tenant: str | None = None) -> int:
        """Chunks a filter keeps (of one tenant, or of all when ``tenant`` is None)."""
        return sum(
            n
            for (tn, cc, dt), n in self.counts.items()
            if (tenant is None or tn == tenant)
            and (country is None or cc is None or cc == country)
            and (types is None or dt in types)
        )


def plan_search(
    stats: Stats, country: str | None, types: list[str] | None, fetch: int, tenant: str
) -> Plan:
    """How to run the vector half: exactly for small filtered sets, otherwise HNSW with an
    ``ef_search`` large enough that the filter still leaves ``fetch`` candidates. With a
    country index the candidates come from that country's chunks only, so only the type
    filter thins them out. Another tenant's chunks are in the same indexes, so the tenant is
    part of the filter."""
    matching = stats.count(country, types, tenant)
    if matching <= _EXACT_BELOW:
        return Plan(matching, exact=True)
    if country is not None and country in stats.country_indexes:
        population = stats.count(country, None)
    else:
        population = stats.total
    ef = math.ceil(fetch * population / matching * _EF_MARGIN)
    return Plan(matching, exact=False, ef=max(_EF_MIN, min(_EF_MAX, ef, stats.total)))


async def run_search(
    conn: psycopg.AsyncConnection,
    statement: sql.Composed,
    args: dict[str, Any],
    plan: Plan | None,
) -> list[Any]:
    """Run a :func:`search_statement` or :func:`batch_statement`: one round trip (settings,
    query and commit are pipelined). Returns the rows."""
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
        return await cur.fetchall()


def _filters(country: str | None, types: list[str] | None) -> sql.Composable:
    """The WHERE condition on ``chunks c``: the ``tenant`` parameter's chunks, doc types from
    the ``types`` parameter."""
    parts: list[sql.Composable] = [sql.SQL("c.tenant = %(tenant)s")]
    if country is not None:
        parts.append(country_condition(country))
    if types:
        parts.append(sql.SQL("c.doc_type = ANY(%(types)s)"))
    return sql.SQL(" AND ").join(parts)


def search_statement(
    query: str,
    vector: np.ndarray | None,
    plan: Plan | None,
    mode: SearchMode,
    k: int,
    fetch: int,
    country: str | None,
    types: list[str] | None,
    tenant: str,
    total: int = 0,
    *,
    refs: tuple[sql.Composable, sql.Composable] | None = None,
) -> tuple[sql.Composed, dict[str, Any]]:
    """The whole search as one statement: ranked CTEs ``v`` (vectors) and ``t`` (query words
    weighted by rarity, see :mod:`._lexical`; ``total`` is the number of stored chunks), fused
    into ``s`` (cosine plus weighted text score), joined to the citations. Columns: chunk id, score, how many rows ``v``
    found (so a short filtered HNSW answer can be detected), then the rest of
    :data:`HIT_COLUMNS`. ``refs``: the SQL standing for the query text and vector (default
    the ``q`` and ``vec`` parameters)."""
    q_ref, vec_ref = refs or (sql.SQL("%(q)s"), sql.SQL("%(vec)s::vector"))
    cond = _filters(country, types)
    ctes: list[sql.Composable] = []
    if vector is not None:
        assert plan is not None
        if plan.exact:
            # MATERIALIZED keeps the planner from walking the HNSW index for this one.
            ctes.append(
                sql.SQL(
                    "f AS MATERIALIZED (SELECT c.id, c.embedding FROM chunks c WHERE {cond}), "
                    "v AS (SELECT id, d, row_number() OVER (ORDER BY d, id) AS r FROM ("
                    "SELECT id, embedding <=> {vec} AS d FROM f "
                    "ORDER BY d LIMIT %(fetch)s) x)"
                ).format(cond=cond, vec=vec_ref)
            )
        else:
            ctes.append(
                sql.SQL(
                    "v AS (SELECT id, d, row_number() OVER (ORDER BY d, id) AS r FROM ("
                    "SELECT c.id, c.embedding <=> {vec} AS d FROM chunks c WHERE {cond} "
                    "ORDER BY c.embedding <=> {vec} LIMIT %(fetch)s) x)"
                ).format(cond=cond, vec=vec_ref)
            )
    if mode != "vector":
        ctes.append(text_ctes(cond, q_ref))
    fuse: sql.Composable
    if mode == "hybrid":
        fuse = fusion_cte(vec_ref)
    elif mode == "vector":
        fuse = sql.SQL("s AS (SELECT id, 1 - d AS score FROM v ORDER BY r LIMIT %(k)s)")
    else:
        fuse = sql.SQL("s AS (SELECT id, score FROM t ORDER BY r LIMIT %(k)s)")
    statement = sql.SQL(
        "WITH {}, {} SELECT s.id, s.score, {}, {} FROM s JOIN chunks c ON c.id = s.id "
        "JOIN documents d ON d.id = c.document_id ORDER BY s.score DESC, s.id"
    ).format(
        sql.SQL(", ").join(ctes),
        fuse,
        sql.SQL("(SELECT count(*) FROM v)" if vector is not None else "0"),
        sql.SQL(HIT_COLUMNS.split(", ", 1)[1]),
    )
    args: dict[str, Any] = {
        "q": query,
        "k": k,
        "fetch": fetch,
        "cap": TEXT_CANDIDATES,
        "sample": mode == "text",
        "types": types,
        "total": max(1, total),
        "pair": PHRASE_WEIGHT,
        "beta": TEXT_WEIGHT,
        "power": TEXT_POWER,
        "tenant": tenant,
    }
    if vector is not None:
        args["vec"] = vector
    return statement, args


BATCH_REFS = (sql.SQL("b.q"), sql.SQL("b.vec"))
"""The ``refs`` of a :func:`search_statement` that :func:`batch_statement` runs per query."""


def batch_statement(
    queries: list[str], vectors: np.ndarray | None, inner: sql.Composed, args: dict[str, Any]
) -> tuple[sql.Composed, dict[str, Any]]:
    """Several searches under one filter as one statement: ``inner`` (a
    :func:`search_statement` built with :data:`BATCH_REFS`, and its ``args``) run ``LATERAL``
    for each query and its row of ``vectors``, so each gets the very rows it would alone,
    planned once. Columns: the query's position (from 1), then those of ``inner``; rows
    ordered by position, then as one search orders them."""
    args = {k: v for k, v in args.items() if k not in ("q", "vec")}
    args["qs"] = list(queries)
    if vectors is not None:
        args["vecs"] = list(vectors)
    statement = sql.SQL(
        "SELECT b.n, x.* FROM unnest(%(qs)s::text[]{}) WITH ORDINALITY AS b(q, {}n)"
        " CROSS JOIN LATERAL ({}) x ORDER BY 1, 3 DESC, 2"
    ).format(
        sql.SQL(", %(vecs)s::vector[]" if vectors is not None else ""),
        sql.SQL("vec, " if vectors is not None else ""),
        inner,
    )
    return statement, args
