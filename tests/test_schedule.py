"""The pipelined schedule (a pair's synthesis as soon as its findings are in, evidence planned
country by country while lens calls run) gives the results of the stage-by-stage graph: same
simulator seed, same batches, same proposals, findings and citations.

Both graphs run on the real simulator over loopback and the embedded PostgreSQL, with the
response cache off so that each one really asks the provider.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.pipeline import (
    PipelineContext,
    Profile,
    Prompts,
    ProposalRequest,
    RunOptions,
    build_graph,
)
from proposals.runs import Services, open_services

PROFILES = [
    Profile(name="young savers", description="urban, smartphone-first, small surpluses"),
    Profile(name="rural families", description="seasonal income, agents and remittances"),
]


class _Log:
    """A reporter that keeps the events in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def node_started(self, node: str, total: int) -> None:
        self.events.append(("node_started", node, total))

    def node_finished(self, node: str, done: int, failed: int = 0) -> None:
        self.events.append(("node_finished", node, done, failed))

    def batch_started(self, node: str, batch: str, items: int, tokens: int) -> None:
        self.events.append(("batch_started", node, items, tokens))

    def batch_finished(self, node: str, batch: str, items: int, ok: bool) -> None:
        self.events.append(("batch_finished", node, batch))

    def item_failed(self, failure: Any) -> None:
        self.events.append(("item_failed", failure.item))

    def warning(self, kind: str, message: str, node: str | None = None) -> None:
        self.events.append(("warning", kind))

    def proposal(self, proposal: Any) -> None:
        self.events.append(("proposal", proposal.country, proposal.profile))


@pytest.fixture
async def services(corpus_settings: Settings, embedder: Embedder) -> AsyncIterator[Services]:
    async with open_services(corpus_settings, embedder=embedder, cache=False) as svc:
        yield svc


async def _run(services: Services, *, pipelined: bool) -> tuple[dict[str, Any], _Log]:
    request = ProposalRequest(
        brief="savings and microinsurance products for households",
        countries=["AR", "BR"],
        profiles=PROFILES,
        variables={"channel": "mobile app"},
        options=RunOptions(themes=3, proposals_per_pair=2),
    )
    log = _Log()
    ctx = PipelineContext(
        run_id=f"schedule-{pipelined}",
        request=request,
        gateway=services.gateway,
        store=services.store,
        prompts=Prompts(),
        default_model=services.gateway.config.model,
        context_window=32768,
        output_reserve=4096,
        reporter=log,
    )
    state = await build_graph(pipelined=pipelined).ainvoke({}, context=ctx)
    return dict(state), log


def _findings(state: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            f["lens"],
            f["theme_id"],
            f["country"],
            f["profile"],
            f["text"],
            tuple(c["chunk_id"] for c in f["citations"]),
        )
        for f in state["findings"]
    )


def _proposals(state: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            p["country"],
            p["profile"],
            p["rank"],
            p["title"],
            p["summary"],
            p["score"],
            tuple(c["chunk_id"] for c in p["citations"]),
        )
        for p in state["proposals"]
    )


async def test_pipelined_and_staged_runs_give_the_same_results(services: Services) -> None:
    staged, staged_log = await _run(services, pipelined=False)
    # Calls, not HTTP requests: a retry (a slow answer on a loaded machine, or an answer cut
    # at its learned expected size and asked again) adds a request, not a call.
    calls_staged = services.gateway.stats().calls
    pipelined, log = await _run(services, pipelined=True)
    calls_pipelined = services.gateway.stats().calls - calls_staged

    assert staged["themes"] == pipelined["themes"]
    assert _proposals(pipelined) == _proposals(staged) and _proposals(staged)
    assert _findings(pipelined) == _findings(staged) and _findings(staged)
    assert not staged.get("failed") and not pipelined.get("failed")

    # The same batches (lens, items, tokens), so the same prompts and the same calls.
    def batches(events: list[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
        return Counter(e[1:] for e in events if e[0] == "batch_started" and e[1] != "synthesize")

    assert batches(log.events) == batches(staged_log.events)
    assert calls_pipelined == calls_staged

    # Pipelined: the first pair's proposals are out before the last lens batch is done.
    first_proposal = next(i for i, e in enumerate(log.events) if e[0] == "proposal")
    last_lens = max(
        i for i, e in enumerate(log.events) if e[0] == "batch_finished" and e[1] != "synthesize"
    )
    assert first_proposal < last_lens
    # Every node still reports its start (with the batch totals) and its end once.
    for node in ("plan", "market_fit", "regulation", "feasibility", "positioning", "synthesize"):
        finished = [e for e in log.events if e[0] == "node_finished" and e[1] == node]
        staged_finished = [e for e in staged_log.events if e[0] == "node_finished" and e[1] == node]
        assert finished == staged_finished, node
        started = [e for e in log.events if e[0] == "node_started" and e[1] == node]
        staged_started = [e for e in staged_log.events if e[0] == "node_started" and e[1] == node]
        assert started[-1] == staged_started[-1], node


async def test_planning_turns_go_to_the_lowest_index_first() -> None:
    from proposals.pipeline._schedule import RunSchedule

    schedule = RunSchedule()
    order: list[int] = []
    release = asyncio.Event()

    async def plan(index: int) -> None:
        async with schedule.turn(index):
            order.append(index)
            if index == 9:
                await release.wait()

    first = asyncio.create_task(plan(9))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(plan(i)) for i in (3, 1, 2)]
    cancelled = asyncio.create_task(plan(0))
    await asyncio.sleep(0)
    cancelled.cancel()  # a waiter that gives up does not block the others
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == [9, 1, 2, 3]
