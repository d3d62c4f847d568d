"""Running the proposal graph: ``generate`` (new run) and ``resume`` (after a restart).

```python
async with generate(request, settings) as run:     # the run starts here, in a task group
    async for event in run.events():               # live typed events, ending with run_finished
        ...
result = await run.result()                        # ProposalResult (also on the last event)
```

A run has an id at once (``run.run_id``); its events are numbered and stored in PostgreSQL,
its graph state is checkpointed with thread id = run id, so :func:`resume` continues a run
a previous process left unfinished. Leaving the ``async with`` waits for the run to end;
leaving it with an exception (or cancellation) cancels the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

from langchain_core.runnables import RunnableConfig

from ..config import Settings
from ..errors import InputError, ProposalsError, RuntimeFailure
from ..llm import Budget
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
    build_graph,
    finding_order,
)
from ._emitter import RunEmitter
from ._events import RunEvent, RunFinished, RunStarted
from ._services import Services, open_services
from ._store import EventLog, RunRegistry

__all__ = ["Run", "generate", "resume"]

_RECURSION_LIMIT = 64


class Run:
    """A running (or finished) generation. Use through :func:`generate` / :func:`resume`."""

    def __init__(
        self,
        request: ProposalRequest | None,
        settings: Settings,
        *,
        services: Services | None,
        run_id: str | None,
        resuming: bool,
        service_options: dict[str, Any],
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.request = request
        self._settings = settings
        self._services = services
        self._resuming = resuming
        self._service_options = service_options
        self._stack = contextlib.AsyncExitStack()
        self._emitter: RunEmitter | None = None
        self._task: asyncio.Task[ProposalResult | None] | None = None
        self._error: BaseException | None = None
        self._result: ProposalResult | None = None
        self._ready = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            if self._services is None:
                self._services = await self._stack.enter_async_context(
                    open_services(self._settings, **self._service_options)
                )
            services = self._services
            registry = RunRegistry(services.database)
            log = EventLog(services.database)
            start_seq = 0
            if self._resuming:
                record = await registry.get(self.run_id)
                if record is None:
                    raise InputError(f"no run with id {self.run_id!r} to resume")
                self.request = record.request
                start_seq = await log.last_seq(self.run_id)
            else:
                if self.request is None:
                    raise InputError("generate needs a request")
                await registry.create(self.run_id, self.request)
            self._emitter = RunEmitter(self.run_id, log, start_seq=start_seq)
            if start_seq:
                last = await log.read(self.run_id, after=start_seq - 1)
                if last:
                    self._emitter.restore_usage(last[-1].usage)
            group = await self._stack.enter_async_context(asyncio.TaskGroup())
            group.create_task(self._emitter.writer())
            self._task = group.create_task(self._execute(services, registry))
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc is not None and self._task is not None and not self._task.done():
            self._task.cancel()
        # The caller's exception is theirs: it propagates unchanged after the run's tasks
        # are finished or cancelled, rather than being wrapped by the task group.
        await self._stack.__aexit__(None, None, None)
        return None

    # -- consumer API --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[RunEvent]:
        """Live events of this run, ending with ``run_finished``."""
        assert self._emitter is not None, "use the run inside 'async with'"
        while True:
            event = await self._emitter.queue.get()
            yield event
            if isinstance(event, RunFinished):
                return

    async def result(self) -> ProposalResult:
        """Wait for the end of the run; its result (raises if the run itself crashed)."""
        assert self._task is not None, "use the run inside 'async with'"
        await asyncio.wait({self._task})
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def in_flight(self) -> int:
        """LLM calls of this run in flight now."""
        return self._emitter.in_flight if self._emitter else 0

    # -- the run ------------------------------------------------------------------------------

    async def _execute(self, services: Services, registry: RunRegistry) -> ProposalResult | None:
        emitter = self._emitter
        assert emitter is not None and self.request is not None
        request = self.request
        settings = self._settings
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
            run_id=self.run_id,
            request=request,
            gateway=services.gateway,
            store=services.store,
            prompts=Prompts(settings.prompts_dir),
            default_model=services.gateway.config.model,
            context_window=opts.context_window or settings.context_window,
            output_reserve=opts.output_reserve or settings.output_reserve,
            reporter=emitter,
            budget=budget,
        )
        graph = build_graph(services.checkpointer)
        config = RunnableConfig(
            configurable={"thread_id": self.run_id}, recursion_limit=_RECURSION_LIMIT
        )
        unsubscribe = services.gateway.subscribe(self.run_id, emitter.on_call)
        try:
            emitter.emit(
                RunStarted,
                countries=request.countries,
                pairs=len(request.pairs()),
                themes=opts.themes,
                provider=services.provider,
                simulated=services.simulated,
                resumed=self._resuming,
            )
            await registry.set_status(self.run_id, "running")
            graph_input: PipelineState | None = {}
            if self._resuming:
                snapshot = await graph.aget_state(config)
                graph_input = None if snapshot.values or snapshot.next else {}
            state = await graph.ainvoke(graph_input, config, context=context)
            result = _result(self.run_id, request, state, services, emitter, started)
            await registry.set_status(self.run_id, result.status, result=result)
            self._result = result
            emitter.emit(
                RunFinished,
                status=result.status,
                proposals=len(result.proposals),
                failed=len(result.failed),
                elapsed_s=result.elapsed_s,
                result=result,
            )
            return result
        except Exception as exc:
            error: BaseException = exc
            if not isinstance(exc, ProposalsError):
                error = RuntimeFailure(f"run {self.run_id} failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            self._error = error
            with contextlib.suppress(ProposalsError):
                await registry.set_status(self.run_id, "failed", error=str(error))
            emitter.emit(
                RunFinished,
                status="failed",
                proposals=0,
                failed=0,
                elapsed_s=time.monotonic() - started,
                error=str(error),
            )
            return None
        finally:
            unsubscribe()
            emitter.close()


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
        stop_reason=stops[0] if stops else None,
        elapsed_s=round(time.monotonic() - started, 3),
    )


def generate(
    request: ProposalRequest,
    settings: Settings,
    *,
    services: Services | None = None,
    run_id: str | None = None,
    **service_options: Any,
) -> Run:
    """Start generating proposals for ``request``: ``async with generate(...) as run``.

    ``services`` shares already-open services (database, gateway...) between runs; without
    it they are opened from ``settings`` for this run (``service_options`` go to
    :func:`open_services`).
    """
    return Run(
        request,
        settings,
        services=services,
        run_id=run_id,
        resuming=False,
        service_options=service_options,
    )


def resume(
    run_id: str,
    settings: Settings,
    *,
    services: Services | None = None,
    **service_options: Any,
) -> Run:
    """Continue run ``run_id`` from its last checkpoint (same use as :func:`generate`).

    Calls already answered are served by the response cache; finished graph steps are not
    repeated.
    """
    return Run(
        None,
        settings,
        services=services,
        run_id=run_id,
        resuming=True,
        service_options=service_options,
    )
