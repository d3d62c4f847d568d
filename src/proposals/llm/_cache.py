"""The persistent response cache (and per-call usage log) in PostgreSQL.

A request is identified by the SHA-256 of its canonical JSON: the endpoint that answers it,
model, messages, the response schema and the generation parameters. Delivery details
(timeouts, tags) are not part of it. The endpoint is part of it so that an answer is only ever
reused from the provider that gave it (a simulated answer never reaches a real provider's run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from ..errors import DatabaseError
from ._usage import CallTags, Usage, UsageTotals

if TYPE_CHECKING:
    from ..db import Database

__all__ = ["CachedResponse", "LoggedCall", "ResponseCache", "request_key"]


def request_key(
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    *,
    endpoint: str = "",
) -> str:
    """Hex SHA-256 identifying a request to ``endpoint``; equal requests give equal keys."""
    blob = json.dumps(
        {
            "endpoint": endpoint,
            "model": model,
            "messages": messages,
            "schema": schema,
            "params": params or {},
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class LoggedCall:
    """One row of the usage log: a call answered (by the provider or from the cache)."""

    id: int
    node: str | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored answer and the usage of the call that produced it."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


class ResponseCache:
    """Cache of LLM answers (and log of per-call usage) in the project's database."""

    def __init__(self, database: Database) -> None:
        self._pool = database.pool

    async def get(self, key: str) -> CachedResponse | None:
        """The answer stored for ``key``, counting the hit; ``None`` when absent."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "UPDATE llm_cache SET hits = hits + 1, last_hit_at = now() "
                    "WHERE request_hash = %s "
                    "RETURNING response_text, model, prompt_tokens, completion_tokens, "
                    "finish_reason",
                    (key,),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"LLM cache lookup failed: {exc}") from exc
        return None if row is None else CachedResponse(*row)

    async def put(self, key: str, response: CachedResponse) -> None:
        """Store an answer (the first one stored for a key wins)."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO llm_cache (request_hash, model, response_text, prompt_tokens, "
                    "completion_tokens, finish_reason) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (request_hash) DO NOTHING",
                    (
                        key,
                        response.model,
                        response.text,
                        response.prompt_tokens,
                        response.completion_tokens,
                        response.finish_reason,
                    ),
                )
        except psycopg.Error as exc:
            raise DatabaseError(f"LLM cache write failed: {exc}") from exc

    async def record_usage(self, key: str, model: str, tags: CallTags, usage: Usage) -> None:
        """Append one call's usage to the log."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO llm_usage (run_id, node, model, request_hash, prompt_tokens, "
                    "completion_tokens, cost_usd, cached) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        tags.run_id,
                        tags.node,
                        model,
                        key,
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        usage.cost_usd,
                        usage.cached,
                    ),
                )
        except psycopg.Error as exc:
            raise DatabaseError(f"LLM usage log write failed: {exc}") from exc

    async def run_calls(self, run_id: str) -> list[LoggedCall]:
        """The usage log of one run, oldest first."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT id, node, model, prompt_tokens, completion_tokens, cost_usd, cached,"
                    " created_at FROM llm_usage WHERE run_id = %s ORDER BY id",
                    (run_id,),
                )
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise DatabaseError(f"LLM usage query failed: {exc}") from exc
        return [LoggedCall(*row) for row in rows]

    async def run_usage(self, run_id: str) -> UsageTotals:
        """Provider usage of one run as logged, cache hits counted apart. The log row of a
        call is written with its answer, so it survives a process killed right after."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FILTER (WHERE NOT cached), count(*) FILTER (WHERE cached), "
                    "coalesce(sum(prompt_tokens) FILTER (WHERE NOT cached), 0), "
                    "coalesce(sum(completion_tokens) FILTER (WHERE NOT cached), 0), "
                    "coalesce(sum(cost_usd) FILTER (WHERE NOT cached), 0) "
                    "FROM llm_usage WHERE run_id = %s",
                    (run_id,),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"LLM usage query failed: {exc}") from exc
        assert row is not None
        return UsageTotals(
            calls=row[0],
            cached_calls=row[1],
            prompt_tokens=row[2],
            completion_tokens=row[3],
            cost_usd=float(row[4]),
        )
