"""Executing one held run: the proposal graph, its events, and an end on every exit path.

:func:`execute_run` runs the LangGraph graph of a run this process holds a lease on. The
graph is checkpointed in PostgreSQL with thread id = run id: a run claimed again after its
holder died resumes from the last checkpoint (finished tasks are not run again; answered calls
come from the response cache), and its event seqs continue from the last stored one.

Whatever happens, a run that this process still holds ends with a stored ``run_finished``
event and a final status in one transaction: ``completed``, ``completed_with_errors``,
``stopped_budget`` (from the result), ``cancelled`` (asked for), ``failed`` (an exception, or
events that could not be stored). Two exits write no end: the lease was lost (another holder
has the run now) and this process shutting down (the run goes back to the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig

from ..errors import ProposalsError, RuntimeFailure
from ..llm import Budget, ResponseCache
from ..observe import run_span
from ..pipeline import (
    FailedItem,
    Finding,
    PipelineContext,
    PipelineState,
    Prompts,
    Proposal,
    ProposalRequest,
    ProposalResult,
    RunStatus,
    Theme,
    UsageTotals,
    build_graph,
    finding_order,
)
from ._accounting import lost_calls, usage_by
from ._emitter import RunEmitter
from ._events import CallEvent, RunEvent, RunFinished, RunStarted
from ._log import EventLog, LeaseLost
from ._services import Services
from ._store import Lease, RunRecord

__all__ = ["RunControl", "execute_run"]

log = logging.getLogger(__name__)

_RECURSION_LIMIT = 64


@dataclass
class RunControl:
    """How this process stops a run it holds: why, and the graph task to cancel."""

    reason: str | None = None
    """``cancel`` (asked for), ``interrupt`` (Ctrl-C in this process), ``lost`` (lease gone)
    or ``writer`` (events not storable)."""
    graph: asyncio.Task[ProposalResult] | None = field(default=None, repr=False)

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.graph is not None and not self.graph.done():
            self.graph.cancel()


async def execute_run(
    services: Services,
    record: RunRecord,
    lease: Lease,
    *,
    log_: EventLog,
    publish: Callable[[Sequence[RunEvent]], None],
    release: Callable[[Lease], Awaitable[Any]],
    control: RunControl,
) -> RunFinished | None:
    """Run ``record`` under ``lease`` to its end; the stored ``run_finished`` event, or
    ``None`` when the lease was lost or the end could not be stored.

    Cancelling this coroutine (process shutdown) stores what is buffered and gives the run
    back to the queue, where any worker resumes it.
    """
    started = time.monotonic()
    emitter = RunEmitter(
        record.id,
        log=log_,
        lease=lease,
        publish=publish,
        start_seq=record.last_seq,
        usage=await _usage_so_far(services, record),
        progress=record.progress,
        on_cancel_requested=lambda: control.stop("cancel"),
    )
    if record.last_seq:
        stored = await log_.read(record.id)
        for event in stored:
            emitter.calls.add(event)  # the timeline and accounting span every attempt
        logged = await ResponseCache(services.database).run_calls(record.id)
        for fields in lost_calls(stored, logged):
            emitter.calls.add(emitter.emit(CallEvent, **fields))
    writer = emitter.start()
    graph = asyncio.create_task(_invoke(services, record, lease, emitter), name=f"run-{record.id}")
    control.graph = graph
    if record.cancel_requested:
        control.stop("cancel")
    try:
        await asyncio.wait({graph, writer}, return_when=asyncio.FIRST_COMPLETED)
        if not graph.done():  # the writer died: events cannot be stored
            error = writer.exception()
            control.stop("lost" if isinstance(error, LeaseLost) else "writer")
            await asyncio.wait({graph})
    except asyncio.CancelledError:
        graph.cancel()
        await emitter.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait({graph})
            await emitter.flush()
            await release(lease)
        raise
    if control.reason == "lost":
        await emitter.stop()
        return None
    status, result, error_text = _outcome(record.id, graph, writer, control)
    try:
        return await emitter.finish(
            status, result=result, error=error_text, elapsed_s=time.monotonic() - started
        )
    except LeaseLost:
        return None
    except ProposalsError as exc:
        # The end cannot be stored: the lease expires and another holder resumes the run.
        log.error("run %s: could not store its end (%s); its lease will expire", record.id, exc)
        return None


async def _usage_so_far(services: Services, record: RunRecord) -> UsageTotals:
    """The run's usage before this claim. The usage log is written with each answer, before
    it is cached; a holder killed before storing that call's event still logged it, so the
    log's counts win when they are ahead of the stored record's."""
    usage = record.usage
    if record.attempts <= 1 and not record.last_seq:
        return usage
    logged = await ResponseCache(services.database).run_usage(record.id)
    if logged.calls + logged.cached_calls <= usage.calls + usage.cached_calls:
        return usage
    return usage.model_copy(
        update={
            "calls": logged.calls,
            "cached_calls": logged.cached_calls,
            "prompt_tokens": logged.prompt_tokens,
            "completion_tokens": logged.completion_tokens,
            "cost_usd": logged.cost_usd,
        }
    )


def _outcome(
    run_id: str,
    graph: asyncio.Task[ProposalResult],
    writer: asyncio.Task[None],
    control: RunControl,
) -> tuple[RunStatus, ProposalResult | None, str | None]:
    if graph.cancelled():
        if control.reason == "writer":
            cause = writer.exception() if writer.done() and not writer.cancelled() else None
            return "failed", None, f"run {run_id} failed: its events could not be stored: {cause}"
        if control.reason == "interrupt":
            return "interrupted", None, "interrupted"
        return "cancelled", None, None
    exc = graph.exception()
    if exc is None:
        result = graph.result()
        return result.status, result, None
    if not isinstance(exc, ProposalsError):
        error = RuntimeFailure(f"run {run_id} failed: {type(exc).__name__}: {exc}")
        log.error("run %s failed", run_id, exc_info=exc)
        return "failed", None, str(error)
    return "failed", None, str(exc)


async def _invoke(
    services: Services, record: RunRecord, lease: Lease, emitter: RunEmitter
) -> ProposalResult:
    request = record.request
    settings = services.settings
    started = time.monotonic()
    opts = request.options
    budget = (
        Budget(max_tokens=opts.max_tokens, max_cost=opts.max_cost_usd)
        if opts.max_tokens or opts.max_cost_usd
        else None
    )
    if budget is not None:
        budget.used_tokens = emitter.usage.total_tokens
        budget.used_cost = emitter.usage.cost_usd
    context = PipelineContext(
        run_id=record.id,
        request=request,
        gateway=services.gateway,
        store=services.store.for_tenant(record.tenant),
        prompts=Prompts(settings.prompts_dir),
        default_model=services.gateway.config.model,
        context_window=opts.context_window or settings.context_window,
        output_reserve=opts.output_reserve or settings.output_reserve,
        reporter=emitter,
        budget=budget,
        tenant=record.tenant,
    )
    graph = build_graph(services.checkpointer)
    config = RunnableConfig(configurable={"thread_id": record.id}, recursion_limit=_RECURSION_LIMIT)
    snapshot = await graph.aget_state(config)
    resumed = bool(snapshot.values or snapshot.next)
    unsubscribe = services.gateway.subscribe(record.id, emitter.on_call)
    try:
        emitter.emit(
            RunStarted,
            countries=request.countries,
            pairs=len(request.pairs()),
            themes=opts.themes,
            provider=services.provider,
            simulated=services.simulated,
            resumed=resumed or lease.attempt > 1,
            worker_id=lease.holder,
            attempt=lease.attempt,
        )
        # An endpoint nobody listens at fails the run now, with its URL, rather than
        # after every call has spent its retries.
        await services.gateway.check_connection()
        graph_input: PipelineState | None = None if resumed else {}
        with run_span(
            record.id,
            countries=request.countries,
            profiles=sorted({p.name for _, p in request.pairs()}),
        ):
            try:
                state = await graph.ainvoke(graph_input, config, context=context)
            finally:
                context.trace.close()
        return _result(record.id, request, state, services, emitter, started)
    finally:
        unsubscribe()


def _result(
    run_id: str,
    request: ProposalRequest,
    state: dict[str, Any],
    services: Services,
    emitter: RunEmitter,
    started: float,
) -> ProposalResult:
    """The run's result from the final graph state."""
    order = {(c, p.name): i for i, (c, p) in enumerate(request.pairs())}
    proposals = sorted(
        (Proposal.model_validate(p) for p in state.get("proposals") or []),
        key=lambda p: (order.get((p.country, p.profile), len(order)), p.rank),
    )
    failed = [FailedItem.model_validate(f) for f in state.get("failed") or []]
    stops = state.get("stops") or []
    timeline = emitter.calls.timeline()
    status: RunStatus
    if stops:
        status = "stopped_budget"
    elif failed:
        status = "completed_with_errors"
    else:
        status = "completed"
    return ProposalResult(
        run_id=run_id,
        status=status,
        request=request,
        simulated=services.simulated,
        provider=services.provider,
        themes=[Theme.model_validate(t) for t in state.get("themes") or []],
        findings=[
            Finding.model_validate(f)
            for f in sorted(state.get("findings") or [], key=finding_order)
        ],
        proposals=proposals,
        failed=failed,
        warnings=list(dict.fromkeys(state.get("warnings") or [])),
        usage=emitter.usage,
        calls=len(timeline.calls),
        usage_by_node=usage_by(timeline, "node"),
        usage_by_model=usage_by(timeline, "model"),
        stop_reason=stops[0] if stops else None,
        elapsed_s=round(time.monotonic() - started, 3),
    )
