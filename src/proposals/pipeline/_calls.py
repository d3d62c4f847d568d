"""LLM calls of the nodes: one structured call, isolated concurrency.

Packing decides what goes into one call (token budget); the gateway decides how many calls
are in flight. Nothing here limits concurrency: every batch is started and the gateway's
adaptive limiter queues what the provider cannot take yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel

from ..errors import ProposalsError, ProviderError
from ..llm import CallTags
from ._context import PipelineContext
from ._schemas import AnswerSchema

__all__ = ["ask", "gather_isolated"]

R = TypeVar("R")


async def ask(
    ctx: PipelineContext,
    node: str,
    messages: list[dict[str, str]],
    schema: AnswerSchema,
    max_tokens: int,
    *,
    units: int = 1,
    prior: float | None = None,
) -> BaseModel:
    """One structured call through the shared gateway, tagged with the run and node.

    ``units`` (items, proposals) is what the answer's length grows with; ``prior`` the
    expected tokens per unit before this run has seen an answer of ``node``."""
    sizer_node = node if node in ("analyze", "synthesize") else "lens"
    with ctx.sizes.call(sizer_node) as answered:
        result = await ctx.gateway.complete(
            messages,
            model=ctx.model_for(node),
            schema=schema.model,
            schema_format=schema.response_format,
            max_tokens=max_tokens,
            # Asked when the gateway admits the call: what the run knows then, not now.
            expected_tokens=lambda: ctx.sizes.expect(sizer_node, units, max_tokens, prior),
            tags=CallTags(run_id=ctx.run_id, node=node),
            budget=ctx.budget,
        )
        answer = result.answer_tokens
        answered(units, result.usage.completion_tokens if answer is None else answer)
    parsed = result.parsed
    if parsed is None:
        raise ProviderError(f"{node}: the model returned no parsable answer")
    return parsed


async def gather_isolated(
    factories: Sequence[Callable[[], Awaitable[R]]],
) -> list[R | ProposalsError]:
    """Run coroutines concurrently; each one's :class:`ProposalsError` is returned in its place.

    Other exceptions (bugs) cancel the siblings and propagate, as a task group does.
    """

    async def guarded(factory: Callable[[], Awaitable[R]]) -> R | ProposalsError:
        try:
            return await factory()
        except ProposalsError as exc:
            return exc

    if len(factories) == 1:
        return [await guarded(factories[0])]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(guarded(f)) for f in factories]
    return [t.result() for t in tasks]
