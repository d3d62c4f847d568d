"""LLM calls of the nodes: one structured call, answer schemas, isolated concurrency.

Packing decides what goes into one call (token budget); the gateway decides how many calls
are in flight. Nothing here limits concurrency: every batch is started and the gateway's
adaptive limiter queues what the provider cannot take yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, Field, create_model

from ..errors import ProposalsError, ProviderError
from ..llm import CallTags
from ._context import PipelineContext
from ._models import FindingOut, ProposalOut, ThemeOut

__all__ = [
    "ask",
    "findings_schema",
    "gather_isolated",
    "proposals_schema",
    "themes_schema",
]

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


async def ask(
    ctx: PipelineContext,
    node: str,
    messages: list[dict[str, str]],
    schema: type[M],
    max_tokens: int,
) -> M:
    """One structured call through the shared gateway, tagged with the run and node."""
    result = await ctx.gateway.complete(
        messages,
        model=ctx.model_for(node),
        schema=schema,
        max_tokens=max_tokens,
        tags=CallTags(run_id=ctx.run_id, node=node),
        budget=ctx.budget,
    )
    parsed = result.parsed
    if parsed is None:
        raise ProviderError(f"{node}: the model returned no parsable answer")
    return parsed  # type: ignore[return-value]


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


def _bounded_list(item: Any, max_items: int) -> Any:
    return (list[item], Field(default_factory=list, json_schema_extra={"maxItems": max_items}))


@cache
def themes_schema(max_items: int) -> type[BaseModel]:
    """Node A's answer with at most ``max_items`` themes (stated in the schema, not enforced)."""
    return create_model("OpportunityThemes", themes=_bounded_list(ThemeOut, max_items))


@cache
def proposals_schema(max_items: int) -> type[BaseModel]:
    """The synthesis answer with at most ``max_items`` proposals."""
    return create_model("ProductProposals", proposals=_bounded_list(ProposalOut, max_items))


@cache
def findings_schema(items: int, max_findings: int) -> type[BaseModel]:
    """A lens answer for a batch: one list of findings per item, keys ``item_1..item_n``."""
    fields: dict[str, Any] = {
        f"item_{i}": _bounded_list(FindingOut, max_findings) for i in range(1, items + 1)
    }
    return create_model(f"LensFindings{items}", **fields)
