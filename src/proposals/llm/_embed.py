"""Embedding requests (``POST /embeddings``) through a gateway's budgets.

An endpoint's quota counts embedding requests as it counts chat completions: the same
connections, requests per minute and tokens per minute. Sent through the gateway, they take
their share of its concurrency limit and rate budgets (shared with other processes when the
gateway holds a :class:`SharedBudget`), are retried by its one retry loop, and teach its limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from ..tokens import count_tokens
from ._attempts import AttemptLoop, Attempts
from ._errors import NonRetryableError

__all__ = ["Embeddings", "send_embeddings"]


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The answer to one :meth:`LLMGateway.embed` call."""

    vectors: list[list[float]]
    """One vector per input text, in input order."""
    prompt_tokens: int
    """Tokens the provider charged (the local count when it reported none)."""
    attempts: int
    """HTTP attempts made."""


async def send_embeddings(
    attempts: AttemptLoop,
    client: openai.AsyncOpenAI,
    texts: Sequence[str],
    *,
    model: str,
    dimensions: int | None,
    timeout_s: float,
    base: dict[str, Any],
) -> Embeddings:
    """Embed ``texts`` in one request (the caller batches), retried by ``attempts``."""
    estimate = sum(count_tokens(t) for t in texts)
    extra: dict[str, Any] = {"dimensions": dimensions} if dimensions else {}

    async def request(
        limit_s: float,
    ) -> tuple[Mapping[str, str], tuple[list[list[float]], int | None]]:
        raw = await client.embeddings.with_raw_response.create(
            model=model,
            input=list(texts),
            encoding_format="float",
            timeout=limit_s,
            **extra,
        )
        return raw.headers, _read(raw.http_response.json(), len(texts))

    tally = Attempts()
    vectors, charged = await attempts.run(request, estimate, timeout_s, tally, base)
    tokens = estimate if charged is None else charged
    attempts.correct(estimate, tokens)
    return Embeddings(vectors, tokens, tally.count)


def _read(body: Any, expected: int) -> tuple[list[list[float]], int | None]:
    """The vectors (reordered by ``index``) and the charged tokens of an embeddings body."""
    try:
        data = sorted(body["data"], key=lambda item: item["index"])
        vectors = [list(item["embedding"]) for item in data]
        usage = body.get("usage") or {}
        tokens = usage.get("prompt_tokens")
    except (TypeError, KeyError, AttributeError) as exc:
        raise NonRetryableError(
            f"the embeddings endpoint answered an unreadable body: {exc}"
        ) from exc
    if len(vectors) != expected:
        raise NonRetryableError(
            f"the embeddings endpoint returned {len(vectors)} vectors for {expected} texts"
        )
    return vectors, int(tokens) if tokens is not None else None
