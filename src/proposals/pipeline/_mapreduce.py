"""The map → reduce machinery the nodes share: pack material under the window, answer every
batch (split on overflow), record what failed, and tree-reduce many answers into one.

``analyze`` (themes) and ``synthesize`` (proposals) both run :func:`map_reduce`; the lens
nodes use :func:`~proposals.llm.call_splitting` directly, one batch per graph task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from ..errors import BudgetExceeded, ProposalsError
from ..llm import Outcome, call_splitting, pack
from ..tokens import count_tokens, truncate_to_tokens
from ._calls import gather_isolated
from ._context import PipelineContext
from ._models import FailedItem

__all__ = [
    "Reduce",
    "answer_groups",
    "budget_stop",
    "keep_cited",
    "map_reduce",
    "pack_texts",
    "record_failure",
]

E = TypeVar("E")
Group = list[tuple[E, str]]
Call = Callable[[list[tuple[E, str]]], Awaitable[list[E]]]


def keep_cited(
    ctx: PipelineContext, node: str, cited: Sequence[int], shown: set[int], where: str
) -> tuple[list[int], list[str]]:
    """Citations that were in the evidence given to the call; the rest are dropped, flagged."""
    kept = list(dict.fromkeys(int(i) for i in cited if int(i) in shown))
    dropped = sorted({int(i) for i in cited} - shown)
    warnings: list[str] = []
    if dropped:
        msg = f"{where}: dropped citation(s) {dropped} not in the evidence given to the call"
        ctx.reporter.warning("dropped_citation", msg, node)
        warnings.append(msg)
    return kept, warnings


def record_failure(
    ctx: PipelineContext, node: str, item: str, exc: BaseException
) -> dict[str, Any]:
    """Report one failed item and return it as the state keeps it."""
    failure = FailedItem(
        node=node, item=item, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__
    )
    ctx.reporter.item_failed(failure)
    return failure.model_dump()


def budget_stop(ctx: PipelineContext, node: str, exc: BaseException) -> dict[str, Any]:
    """The state update of a node stopped by the budget."""
    msg = f"{node}: budget reached, the run stops with partial results ({exc})"
    ctx.reporter.warning("budget", msg, node)
    return {"stops": [str(exc)], "warnings": [msg]}


def pack_texts(
    ctx: PipelineContext, node: str, entries: Sequence[E], texts: Sequence[str], budget: int
) -> tuple[list[Group[E]], list[str]]:
    """Group ``(entry, text)`` pairs into ordered batches under ``budget`` tokens.

    An entry too large alone has its text truncated to the budget (the pipeline's one
    truncation path), with a recorded warning.
    """
    warnings: list[str] = []
    budget = max(budget, 32)
    fitted: list[tuple[E, str, int]] = []
    for entry, text in zip(entries, texts, strict=True):
        n = count_tokens(text) + 1
        if n > budget:
            text = truncate_to_tokens(text, budget - 1)
            msg = f"{node}: an input of {n} tokens was truncated to {budget} to fit the window"
            ctx.reporter.warning("truncated", msg, node)
            warnings.append(msg)
            n = budget
        fitted.append((entry, text, n))
    batches = pack(fitted, budget=budget, count=lambda f: f[2])
    return [[(f[0], f[1]) for f in b.items] for b in batches], warnings


async def answer_groups(
    ctx: PipelineContext,
    node: str,
    groups: list[Group[E]],
    call: Call[E],
    *,
    keep: int,
    label: str,
    on_failure: Callable[[Group[E]], list[E]] = lambda _: [],
) -> tuple[list[E], list[dict[str, Any]], int]:
    """Answer every group concurrently (split in half on overflow); failures are recorded.

    Each answer contributes at most ``keep`` entries. Returns (entries, failures, number of
    answers); more answers than one means they still need merging. :class:`BudgetExceeded`
    is raised once the siblings have finished.
    """
    results = await gather_isolated([partial(call_splitting, g, call) for g in groups])
    merged: list[E] = []
    failures: list[dict[str, Any]] = []
    answers = 0
    for i, result in enumerate(results):
        if isinstance(result, BudgetExceeded):
            raise result
        outcomes: list[Outcome[tuple[E, str], list[E]]]
        if isinstance(result, ProposalsError):
            outcomes = [Outcome(groups[i], error=result)]
        else:
            outcomes = result
        for outcome in outcomes:
            if outcome.error is not None:
                where = f"{label} part {i + 1}/{len(groups)}"
                failures.append(record_failure(ctx, node, where, outcome.error))
                merged.extend(on_failure(outcome.items)[:keep])
            else:
                answers += 1
                merged.extend((outcome.result or [])[:keep])
    return merged, failures, answers


@dataclass(frozen=True, slots=True)
class Reduce(Generic[E]):
    """How to merge many answers' entries: render each entry, the merge prompt around the
    rendered material, the merge call, and the fallback that keeps the best entries unmerged."""

    render: Callable[[E], str]
    messages: Callable[[str], list[dict[str, str]]]
    call: Call[E]
    out_tokens: int
    fallback: Callable[[list[E]], list[E]]
    label: str


async def _tree_reduce(
    ctx: PipelineContext, node: str, entries: list[E], how: Reduce[E], keep: int
) -> tuple[list[E], list[dict[str, Any]], list[str]]:
    """Merge ``entries`` with LLM calls until one call has seen them all (a tree reduce).

    Each level packs the entries into batches under the window; every batch's answer keeps
    at most ``keep`` entries. A level that cannot shrink the input (each entry alone nearly
    fills the window) ends with ``fallback`` instead of looping. A failed batch passes its
    entries on through ``fallback``. Returns (entries, failures, warnings);
    :class:`BudgetExceeded` propagates.
    """
    failures: list[dict[str, Any]] = []
    warnings: list[str] = []
    level = 0
    while True:
        level += 1
        budget = ctx.input_budget(how.messages(""), how.out_tokens)
        groups, warn = pack_texts(ctx, node, entries, [how.render(e) for e in entries], budget)
        warnings += warn
        if len(groups) > 1 and len(groups) >= len(entries):
            msg = (
                f"{how.label}: inputs too large to merge in the window; "
                f"kept the best {keep} unmerged"
            )
            ctx.reporter.warning("reduce_fallback", msg, node)
            return how.fallback(entries), failures, [*warnings, msg]
        merged, failed, answers = await answer_groups(
            ctx,
            node,
            groups,
            how.call,
            keep=keep,
            label=f"{how.label} merge level {level}",
            on_failure=lambda items: how.fallback([e for e, _ in items]),
        )
        failures += failed
        if answers <= 1 and len(groups) == 1:
            return merged, failures, warnings
        if len(merged) >= len(entries):
            msg = f"{how.label}: merging did not shrink the input; kept the best {keep}"
            ctx.reporter.warning("reduce_fallback", msg, node)
            return how.fallback(merged), failures, [*warnings, msg]
        entries = merged


async def map_reduce(
    ctx: PipelineContext,
    node: str,
    groups: list[Group[E]],
    call: Call[E],
    failures: list[dict[str, Any]],
    *,
    keep: int,
    label: str,
    reduce: Reduce[E],
    usable: Callable[[E], bool] = lambda _: True,
) -> tuple[list[E], list[E], list[str]]:
    """Map ``call`` over the packed ``groups``; when more than one answer came back, merge
    the usable entries with a tree reduce.

    Returns (every mapped entry, the final entries, warnings); failed items are appended to
    ``failures`` as they are known, so a budget stop keeps those already recorded.
    :class:`BudgetExceeded` propagates.
    """
    mapped, failed, answers = await answer_groups(ctx, node, groups, call, keep=keep, label=label)
    failures += failed
    entries = [e for e in mapped if usable(e)]
    warnings: list[str] = []
    if answers > 1 and entries:
        entries, failed, warnings = await _tree_reduce(ctx, node, entries, reduce, keep)
        failures += failed
    return mapped, entries, warnings
