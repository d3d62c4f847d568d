"""The full-text half of search and its fusion with the vector half, as SQL fragments.

Questions are not keyword queries: demanding every word (the old ``websearch_to_tsquery``
AND) finds nothing for most of them, and ranking by cover density lets common words decide.
So the text half works like BM25 without term frequency:

- **terms**: the question's lexemes (English stemming, stop words dropped by PostgreSQL), each
  weighted by its inverse document frequency over the chunks (``lexeme_stats``, kept by
  triggers); adjacent words of the question also count as a phrase (``a <-> b``), weighted as
  the commoner of the two, so "net sales" outranks chunks that say "net" and "sales" apart;
- **candidates**: chunks holding any of the rarest words, adding words from the rarest while
  their postings together stay within ``TEXT_CANDIDATES``. A word with more postings than that
  is never the way in: its chunks could only be read in storage order, cut off at the cap (an
  arbitrary sample, not a ranking), and at 100k chunks reading them made the text half cost
  more than the vector half. Such a word still scores the candidates found otherwise. Only
  when the text half is the whole search and even the rarest word is that common, its first
  ``TEXT_CANDIDATES`` chunks are scored, since nothing else would answer;
- **score**: the sum of the weights of the terms a chunk holds; codes, names and numbers are
  rare, so a chunk holding one wins by a wide margin.

Fusion scores the union of both halves' candidates by ``cosine + TEXT_WEIGHT · t`` where
``t`` is the text score over the most the question could score (the sum of all its weights),
in [0, 1]. Unlike reciprocal rank fusion, a weak lexical match (a few common words) moves a
chunk by little and a strong one (a rare code, most of the question's rare words) by much, so
the good vector hits of a paraphrased question are not pulled down by chance word overlap.
"""

from __future__ import annotations

from psycopg import sql

__all__ = [
    "PHRASE_WEIGHT",
    "TEXT_CANDIDATES",
    "TEXT_POWER",
    "TEXT_WEIGHT",
    "fusion_cte",
    "text_ctes",
]

TEXT_WEIGHT = 0.3
"""How much a full lexical match adds to a cosine similarity in hybrid fusion."""
TEXT_POWER = 3.0
"""The normalised text score is raised to this power before weighting: a chunk holding a
few of the question's words gains little, one holding most of its rare words much."""
PHRASE_WEIGHT = 1.0
"""Weight of two adjacent question words found adjacent, relative to the commoner word's."""
TEXT_CANDIDATES = 1000
"""Postings read (and chunks scored, at most) by the text half of one search: the words that
lead to candidates have this many postings together, at most."""


_QUERY = sql.SQL("%(q)s")
_VECTOR = sql.SQL("%(vec)s::vector")


def text_ctes(cond: sql.Composable, query: sql.Composable = _QUERY) -> sql.Composable:
    """CTEs ``qt`` (weighted terms), ``tm`` (their total) and ``t`` (text hits ranked by score,
    ``id, score, r``) for the text ``query`` (default the ``q`` parameter) under the filter
    ``cond``. Parameters: ``total`` (chunks in the store), ``cap``, ``pair``, ``fetch``,
    ``sample`` (whether a rarest word over the cap still leads to candidates: text-only
    search)."""
    return sql.SQL(
        "qpos AS MATERIALIZED (SELECT w.lexeme, p FROM unnest(to_tsvector('english', {q})) w,"
        " unnest(w.positions) p), "
        "qw AS MATERIALIZED (SELECT s.lexeme, s.chunks AS df,"
        " ln(1 + (%(total)s::float8 - s.chunks + 0.5) / (s.chunks + 0.5)) AS idf"
        " FROM (SELECT DISTINCT lexeme FROM qpos) l JOIN lexeme_stats s ON s.lexeme = l.lexeme"
        " WHERE s.chunks > 0), "
        "qt AS MATERIALIZED (SELECT quote_literal(lexeme)::tsquery AS tq, idf AS w FROM qw"
        " UNION ALL SELECT DISTINCT"
        " (quote_literal(a.lexeme) || ' <-> ' || quote_literal(b.lexeme))::tsquery,"
        " least(x.idf, y.idf) * %(pair)s"
        " FROM qpos a JOIN qpos b ON b.p = a.p + 1 AND b.lexeme <> a.lexeme"
        " JOIN qw x ON x.lexeme = a.lexeme JOIN qw y ON y.lexeme = b.lexeme), "
        "tm AS (SELECT coalesce(sum(w), 0) AS m FROM qt), "
        "qg AS MATERIALIZED (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS tq"
        " FROM (SELECT lexeme, df, sum(df) OVER (ORDER BY df, lexeme) AS upto FROM qw) r"
        " WHERE upto <= %(cap)s OR (%(sample)s AND upto = df)), "
        # Scored as read: no copy of the candidates' tsvectors, no join of them with the terms.
        "t AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS r FROM ("
        "SELECT id, score FROM (SELECT c.id, (SELECT sum(qt.w) FROM qt WHERE c.tsv @@ qt.tq)"
        " AS score FROM qg, chunks c WHERE c.tsv @@ qg.tq AND {cond} LIMIT %(cap)s) z"
        " ORDER BY score DESC, id LIMIT %(fetch)s) y)"
    ).format(cond=cond, q=query)


def fusion_cte(vector: sql.Composable = _VECTOR) -> sql.Composable:
    """CTE ``s`` (``id, score``, the best ``%(k)s``): every candidate of ``v`` and ``t``
    rescored by exact cosine to ``vector`` (default the ``vec`` parameter) plus ``%(beta)s``
    times its normalised text score."""
    return sql.SQL(
        "s AS (SELECT u.id, (1 - (c.embedding <=> {vec})) + coalesce(%(beta)s *"
        " power((SELECT sum(qt.w) FROM qt WHERE c.tsv @@ qt.tq) / nullif(tm.m, 0), %(power)s),"
        " 0) AS score"
        " FROM (SELECT id FROM v UNION SELECT id FROM t) u JOIN chunks c ON c.id = u.id, tm"
        " ORDER BY score DESC, u.id LIMIT %(k)s)"
    ).format(vec=vector)
