"""The run manager in one process: queue, worker, subscribers, cancel, tenants.

Real PostgreSQL (the corpus copied per test), the simulator over loopback HTTP, real
LISTEN/NOTIFY. Several managers on one database stand for several processes; the tests with
real worker processes and signals are in ``test_workers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.errors import InputError, NotFound
from proposals.pipeline import Profile, ProposalRequest, RunOptions
from proposals.runs import (
    CallEvent,
    RunEvent,
    RunFinished,
    RunManager,
    Services,
    Worker,
    open_services,
)

DEADLINE_S = 120.0


def _request(**options: Any) -> ProposalRequest:
    return ProposalRequest(
        brief="savings products for households",
        countries=["AR"],
        profiles=[Profile(name="young savers", description="urban, smartphone-first")],
        options=RunOptions(**{"themes": 2, "proposals_per_pair": 2, **options}),
    )


@pytest.fixture
async def services(corpus_settings: Settings, embedder: Embedder) -> AsyncIterator[Services]:
    async with open_services(corpus_settings, embedder=embedder) as svc:
        yield svc


@pytest.fixture
async def manager(corpus_settings: Settings, services: Services) -> AsyncIterator[RunManager]:
    async with await RunManager.open(corpus_settings, services=services) as m:
        yield m


async def _collect(it: AsyncIterator[RunEvent]) -> list[RunEvent]:
    async with asyncio.timeout(DEADLINE_S):
        return [e async for e in it]


async def test_queued_run_is_executed_by_a_worker_and_followed_from_another_manager(
    corpus_settings: Settings, services: Services, manager: RunManager
) -> None:
    # ``observer`` stands for a server process: its own database pool and listener, no worker.
    async with await RunManager.open(corpus_settings) as observer:
        record = await observer.submit(_request())
        assert record.status == "queued" and record.attempts == 0
        early = asyncio.create_task(_collect(observer.subscribe(record.id)))
        worker = Worker(manager, slots=2)
        running = asyncio.create_task(worker.run())
        try:
            events = await early
            # a late subscriber from the middle gets exactly the rest
            middle = len(events) // 2
            late = await _collect(observer.subscribe(record.id, after=middle))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        final = await observer.get(record.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    assert [e.seq for e in late] == list(range(middle + 1, len(events) + 1))
    assert final is not None and final.status == "completed" and final.result is not None
    assert final.worker_id == worker.worker_id and final.attempts == 1
    assert final.last_seq == len(events)
    assert final.provider == services.provider and final.simulated
    assert final.progress["market_fit"].done == final.progress["market_fit"].total > 0
    assert final.usage.calls == final.result.usage.calls > 0
    assert worker.claimed == 1


async def test_slow_subscriber_reads_the_log_and_misses_nothing(
    corpus_settings: Settings, manager: RunManager
) -> None:
    # A tail of 4 events: a subscriber that does not read keeps no queue; when it reads again
    # it pages through the log, then catches up with the live tail.
    manager.hub._tail = 4
    record = await manager.submit(_request(), run_here=True)
    fast = asyncio.create_task(_collect(manager.subscribe(record.id)))
    slow_events: list[RunEvent] = []
    async with asyncio.timeout(DEADLINE_S):
        async for event in manager.subscribe(record.id):
            slow_events.append(event)
            if len(slow_events) == 3:
                # stall until the run has ended, far ahead of this subscriber
                await fast
    events = await fast
    assert len(events) > 3 + 4 * 2
    stored = await manager.log.read(record.id)
    assert [e.seq for e in events] == [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert [e.model_dump() for e in slow_events] == [e.model_dump() for e in stored]


async def test_cancel_ends_running_run_and_cancels_its_calls(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    # Calls take 30 s (real-time latency): the run is cancelled with calls in flight.
    async with (
        open_services(
            corpus_settings,
            embedder=embedder,
            simulator_overrides={"time_scale": 1.0, "ttft_s": 30.0},
        ) as svc,
        await RunManager.open(corpus_settings, services=svc) as manager,
        await RunManager.open(corpus_settings) as other,
    ):
        record = await manager.submit(_request(), run_here=True)
        async with asyncio.timeout(DEADLINE_S):
            async for event in manager.subscribe(record.id):
                if isinstance(event, CallEvent) and event.phase == "started":
                    break
        # cancelled from another manager (another process): through the database
        cancelled = await other.cancel(record.id)
        assert cancelled is not None and cancelled.status == "cancelled"
        events = await manager.log.read(record.id)
        assert svc.gateway.stats().in_flight == 0
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    calls = [e for e in events if isinstance(e, CallEvent)]
    started = sum(e.phase == "started" for e in calls)
    ended = [e for e in calls if e.phase in ("finished", "failed")]
    assert started == len(ended)
    assert any(e.phase == "failed" and "CancelledError" in (e.detail or "") for e in ended)
    # a cancelled run can be resumed from its checkpoint
    async with (
        open_services(corpus_settings, embedder=embedder) as svc,
        await RunManager.open(corpus_settings, services=svc) as manager,
    ):
        resumed = await manager.resume(record.id, run_here=True)
        assert resumed.attempts == 2
        tail = await _collect(manager.subscribe(record.id, after=len(events)))
    assert tail[0].type == "run_started" and tail[0].resumed
    assert isinstance(tail[-1], RunFinished) and tail[-1].status == "completed"


async def test_cancel_a_queued_run(manager: RunManager) -> None:
    record = await manager.submit(_request())
    cancelled = await manager.cancel(record.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    events = await _collect(manager.subscribe(record.id))
    assert [(e.seq, e.type) for e in events] == [(1, "run_finished")]
    again = await manager.cancel(record.id)
    assert again is not None and again.status == "cancelled" and again.last_seq == 1


async def test_tenants_never_see_each_others_runs(manager: RunManager) -> None:
    mine = await manager.submit(_request(), tenant="acme")
    theirs = await manager.submit(_request(), tenant="globex")
    assert await manager.get(mine.id, tenant="globex") is None
    assert await manager.cancel(mine.id, tenant="globex") is None
    assert await manager.result(mine.id, tenant="globex") is None
    assert [r.id for r in await manager.list(tenant="acme")] == [mine.id]
    assert [r.id for r in await manager.list(tenant="globex", status="queued")] == [theirs.id]
    with pytest.raises(NotFound):
        await anext(manager.subscribe(mine.id, tenant="globex"))
    with pytest.raises(NotFound):
        await manager.resume(mine.id, tenant="globex")


async def test_resume_refuses_a_completed_run(manager: RunManager) -> None:
    record = await manager.submit(_request(themes=1, proposals_per_pair=1), run_here=True)
    events = await _collect(manager.subscribe(record.id))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "completed"
    with pytest.raises(InputError, match="already ended completed"):
        await manager.resume(record.id)
    with pytest.raises(NotFound, match="no run with id"):
        await manager.resume("nope")


async def test_events_that_cannot_be_stored_end_the_run_failed(
    corpus_settings: Settings, manager: RunManager
) -> None:
    # Mid-run, the log starts refusing 'call' events (a real failed INSERT): the writer dies,
    # the run is stopped and ends 'failed' with its terminal event right after the last stored
    # one; a subscriber ends instead of waiting forever.
    record = await manager.submit(_request(), run_here=True)
    seen: list[RunEvent] = []
    async with asyncio.timeout(DEADLINE_S):
        async for event in manager.subscribe(record.id):
            seen.append(event)
            if event.type == "node_started":
                async with manager.database.pool.connection() as conn:
                    await conn.execute(
                        "ALTER TABLE run_events ADD CONSTRAINT no_calls"
                        " CHECK (type <> 'call') NOT VALID"
                    )
    final = await manager.get(record.id)
    stored = await manager.log.read(record.id)
    assert final is not None and final.status == "failed"
    assert final.error and "could not be stored" in final.error
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert [e.model_dump() for e in seen] == [e.model_dump() for e in stored]
    assert isinstance(stored[-1], RunFinished) and stored[-1].status == "failed"
    assert final.last_seq == stored[-1].seq


async def test_subscribers_only_ever_see_stored_events(manager: RunManager) -> None:
    record = await manager.submit(_request(themes=1, proposals_per_pair=1), run_here=True)
    count = 0
    async with asyncio.timeout(DEADLINE_S):
        async for event in manager.subscribe(record.id):
            assert await manager.log.last_seq(record.id) >= event.seq
            count += 1
    assert count > 10


def test_lost_calls_are_found_by_their_tokens_when_the_log_order_differs() -> None:
    """Two calls of one node answered at the same moment: the usage log holds A then B, the
    events finished B then A, and A's event was lost. The lost call is A (its tokens), not the
    log's latest row."""
    from datetime import UTC, datetime

    from proposals.llm._cache import LoggedCall
    from proposals.runs._accounting import lost_calls
    from proposals.runs._events import CallEvent

    now = datetime.now(UTC)

    def logged(i: int, prompt: int, completion: int) -> LoggedCall:
        return LoggedCall(i, "lens", "m", prompt, completion, 0.0, False, now)

    def event(
        seq: int, call_id: int, phase: str, prompt: int = 0, completion: int = 0
    ) -> CallEvent:
        return CallEvent(
            run_id="r",
            seq=seq,
            node="lens",
            model="m",
            phase=phase,
            call_id=call_id,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    log = [logged(1, 100, 10), logged(2, 400, 40), logged(3, 900, 90)]
    events = [
        event(1, 1, "started"),
        event(2, 2, "started"),
        event(3, 3, "started"),
        event(4, 1, "finished", 100, 10),
        event(5, 3, "finished", 900, 90),  # the call logged last finished first
    ]
    out = lost_calls(events, log)
    finished = [f for f in out if f["phase"] == "finished"]
    assert [(f["prompt_tokens"], f["completion_tokens"]) for f in finished] == [(400, 40)]
    assert finished[0]["call_id"] == 2  # closes the open call's own started event
    # Nothing is lost when every logged call has its event.
    assert lost_calls([*events, event(6, 2, "finished", 400, 40)], log) == []
