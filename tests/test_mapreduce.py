"""The nodes' shared map -> reduce: dropped citations and the two reduce fallbacks.

The model call is a plain function here: what is under test is how answers are merged,
packed and recorded, not the model (the pipeline tests run the same code on the simulator).
"""

from __future__ import annotations

from typing import Any

from proposals.pipeline import PipelineContext, Prompts, ProposalRequest
from proposals.pipeline._mapreduce import Reduce, keep_cited, map_reduce, pack_texts


class _Recorder:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, str]] = []
        self.failed: list[Any] = []

    def node_started(self, node: str, total: int) -> None: ...
    def node_finished(self, node: str, done: int, failed: int = 0) -> None: ...
    def batch_started(self, node: str, batch: str, items: int, tokens: int) -> None: ...
    def batch_finished(self, node: str, batch: str, items: int, ok: bool) -> None: ...
    def proposal(self, proposal: Any) -> None: ...

    def item_failed(self, failure: Any) -> None:
        self.failed.append(failure)

    def warning(self, kind: str, message: str, node: str | None = None) -> None:
        self.warnings.append((kind, message))


def _ctx(window: int = 2048) -> tuple[PipelineContext, _Recorder]:
    reporter = _Recorder()
    request = ProposalRequest(
        brief="Savings for gig workers", countries=["AR"], profiles=[{"name": "x"}]
    )
    ctx = PipelineContext(
        run_id="r",
        request=request,
        gateway=None,  # type: ignore[arg-type]  # no call reaches it
        store=None,  # type: ignore[arg-type]
        prompts=Prompts(),
        default_model="m",
        context_window=window,
        output_reserve=256,
        reporter=reporter,
    )
    return ctx, reporter


def test_citations_not_shown_to_the_call_are_dropped_and_flagged() -> None:
    ctx, reporter = _ctx()
    kept, warnings = keep_cited(ctx, "analyze", [7, 3, 7, 99, 5], {3, 5, 7}, "analyze batch 1")
    assert kept == [7, 3, 5]  # order kept, duplicates once
    assert warnings == [
        "analyze batch 1: dropped citation(s) [99] not in the evidence given to the call"
    ]
    assert reporter.warnings == [("dropped_citation", warnings[0])]


def _messages(material: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "merge"}, {"role": "user", "content": material}]


async def test_a_merge_that_does_not_shrink_falls_back_to_the_best_entries() -> None:
    ctx, reporter = _ctx(window=220)  # a merge call holds about two entries
    entries = [f"entry {i} " + "pad " * 40 for i in range(6)]
    groups, _ = pack_texts(ctx, "synthesize", entries, entries, budget=100)
    assert 1 < len(groups) < len(entries)  # more than one answer: a merge is needed

    async def echo(items: list[tuple[str, str]]) -> list[str]:
        return [e for e, _ in items]  # "merging" that keeps everything

    failures: list[dict[str, Any]] = []
    mapped, final, warnings = await map_reduce(
        ctx,
        "synthesize",
        groups,
        echo,
        failures,
        keep=10,
        label="proposals AR/x",
        reduce=Reduce(
            render=str,
            messages=_messages,
            call=echo,
            out_tokens=64,
            fallback=lambda es: sorted(es)[:2],
            label="proposals AR/x",
        ),
    )
    assert mapped == entries and failures == []
    assert final == sorted(entries)[:2]
    assert warnings[-1] == "proposals AR/x: merging did not shrink the input; kept the best 10"
    assert ("reduce_fallback", warnings[-1]) in reporter.warnings


async def test_entries_too_large_to_merge_fall_back_unmerged() -> None:
    ctx, reporter = _ctx(window=600)
    big = ["word " * 300 + str(i) for i in range(3)]  # each one alone nearly fills a call

    async def answer(items: list[tuple[str, str]]) -> list[str]:
        return [e for e, _ in items]

    groups = [[(e, e)] for e in big]  # three map answers
    failures: list[dict[str, Any]] = []
    _, final, warnings = await map_reduce(
        ctx,
        "analyze",
        groups,
        answer,
        failures,
        keep=3,
        label="analyze evidence",
        reduce=Reduce(
            render=str,
            messages=_messages,
            call=answer,
            out_tokens=64,
            fallback=lambda es: es[:1],
            label="themes",
        ),
    )
    assert final == big[:1]
    assert (
        warnings[-1] == "themes: inputs too large to merge in the window; kept the best 3 unmerged"
    )
    assert any(kind == "reduce_fallback" for kind, _ in reporter.warnings)
