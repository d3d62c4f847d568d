"""The run manager: every run of a process belongs to it (CLI and server alike).

```python
async with await RunManager.open(settings) as manager:
    record = await manager.submit(request, run_here=True)   # or queued for any worker
    async for event in manager.subscribe(record.id):        # stored, then live; each once
        ...
    result = await manager.result(record.id)
```

A run is stored ``queued`` and picked up by a :class:`~proposals.runs.Worker` in any process
sharing the database, or, with ``run_here=True``, held and executed by this process at once.
Either way it runs under a lease renewed by this process's heartbeat, so a run whose process
dies is claimed again and resumed. Subscribers in any process follow it through the event log
and PostgreSQL notifications (:class:`~proposals.runs._broadcast.EventHub`).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Self

from ..config import DEFAULT_TENANT, Settings
from ..db import Database
from ..errors import NotFound, ProposalsError
from ..pipeline import ProposalRequest, ProposalResult, RunStatus, UsageTotals
from ._broadcast import EventHub
from ._events import RunEvent, RunFinished
from ._execute import RunControl, execute_run
from ._log import EventLog
from ._services import Services, open_services
from ._store import Lease, RunRecord, RunRegistry

__all__ = ["RunManager"]

log = logging.getLogger(__name__)


@dataclass
class _Held:
    lease: Lease
    control: RunControl
    task: asyncio.Task[RunFinished | None] | None = None


class RunManager:
    """Owns every run of a process: submit, look up, cancel, subscribe, execute.

    Open with :meth:`open`; close with :meth:`close` (or ``async with``). Runs this process
    executes share one :class:`Services` (one LLM gateway), opened on the first run.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        services: Services | None,
        owns_database: bool,
        service_options: dict[str, Any],
        lease_s: float,
        heartbeat_s: float,
    ) -> None:
        if heartbeat_s >= lease_s:
            raise ValueError("heartbeat_s must be shorter than lease_s")
        self.settings = settings
        self.database = database
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        """This process's holder id (workers add their own suffix)."""
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.registry = RunRegistry(database)
        self.log = EventLog(database)
        self.hub = EventHub(database, self.log)
        self.hub.on_control = self._on_control
        self._services = services
        self._owns_database = owns_database
        self._service_options = service_options
        self._service_stack = contextlib.AsyncExitStack()
        self._service_lock = asyncio.Lock()
        self._held: dict[str, _Held] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        services: Services | None = None,
        lease_s: float = 30.0,
        heartbeat_s: float = 5.0,
        **service_options: Any,
    ) -> RunManager:
        """Open the database (or use ``services``'), start listening for notifications.

        ``service_options`` go to :func:`open_services` when this manager opens its own.
        """
        owns = services is None
        database = services.database if services is not None else await Database.open(settings)
        manager = cls(
            settings,
            database,
            services=services,
            owns_database=owns,
            service_options=service_options,
            lease_s=lease_s,
            heartbeat_s=heartbeat_s,
        )
        manager._spawn(manager.hub.listen(), "run-events-listener")
        manager._spawn(manager._heartbeat(), "run-leases-heartbeat")
        try:
            await asyncio.wait_for(manager.hub.listening.wait(), 30)
        except BaseException:
            await manager.close()
            raise
        return manager

    async def close(self) -> None:
        """Stop: runs held here go back to the queue (any worker resumes them), then close."""
        if self._closed:
            return
        self._closed = True
        runs = [h.task for h in self._held.values() if h.task is not None]
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.close()
        await self._service_stack.aclose()
        if self._owns_database:
            await self.database.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def services(self) -> Services:
        """The services runs executed here share (opened on first use)."""
        async with self._service_lock:
            if self._services is None:
                self._services = await self._service_stack.enter_async_context(
                    open_services(self.settings, database=self.database, **self._service_options)
                )
            return self._services

    # -- runs ----------------------------------------------------------------------------------

    async def submit(
        self,
        request: ProposalRequest,
        *,
        tenant: str = DEFAULT_TENANT,
        rerun_of: str | None = None,
        run_here: bool = False,
        run_id: str | None = None,
    ) -> RunRecord:
        """Store a new run and return at once: ``queued`` for any worker, or (``run_here``)
        held and started by this process."""
        run_id = run_id or uuid.uuid4().hex[:12]
        if run_here:
            record, lease = await self.registry.create(
                run_id,
                request,
                tenant=tenant,
                rerun_of=rerun_of,
                holder=self.holder,
                lease_s=self.lease_s,
            )
            assert lease is not None
            self.start(record, lease)
            return record
        record, _ = await self.registry.create(run_id, request, tenant=tenant, rerun_of=rerun_of)
        return record

    async def rerun(
        self, run_id: str, *, tenant: str = DEFAULT_TENANT, run_here: bool = False
    ) -> RunRecord:
        """A new run of a stored run's request (answered calls come from the response cache,
        failed items are tried again)."""
        record = await self.registry.get(run_id, tenant=tenant)
        if record is None:
            raise NotFound(f"no run with id {run_id!r}")
        return await self.submit(record.request, tenant=tenant, rerun_of=run_id, run_here=run_here)

    async def resume(
        self, run_id: str, *, tenant: str = DEFAULT_TENANT, run_here: bool = False
    ) -> RunRecord:
        """Continue a run from its last checkpoint: re-queue it (or, ``run_here``, claim it
        here). A run another live process holds is left to it; follow it with
        :meth:`subscribe`. A run that ended completed cannot be resumed (:meth:`rerun` it)."""
        record = await self.registry.requeue(run_id, tenant=tenant)
        if record is None:
            raise NotFound(f"no run with id {run_id!r}")
        if run_here and record.status == "queued":
            claimed = await self.registry.claim(self.holder, lease_s=self.lease_s, run_id=run_id)
            if claimed is not None:
                record, lease = claimed
                self.start(record, lease)
        return record

    async def get(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> RunRecord | None:
        """The run, or ``None`` (also for another tenant's run)."""
        return await self.registry.get(run_id, tenant=tenant)

    async def list(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        status: RunStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[RunRecord]:
        """A tenant's runs, newest first, without their results."""
        return await self.registry.list(tenant=tenant, status=status, limit=limit, offset=offset)

    async def result(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> ProposalResult | None:
        """The stored result of an ended run (``None`` while it runs, or if it failed)."""
        record = await self.registry.get(run_id, tenant=tenant)
        return record.result if record is not None else None

    async def subscribe(
        self, run_id: str, *, tenant: str = DEFAULT_TENANT, after: int = 0
    ) -> AsyncIterator[RunEvent]:
        """Every stored event with seq > ``after``, then live ones: each once, in order,
        ending after ``run_finished``. Raises :class:`NotFound` for an unknown run."""
        if await self.registry.get(run_id, tenant=tenant) is None:
            raise NotFound(f"no run with id {run_id!r}")
        async for event in self.hub.subscribe(run_id, tenant=tenant, after=after):
            yield event

    async def cancel(
        self, run_id: str, *, tenant: str = DEFAULT_TENANT, wait_s: float = 30.0
    ) -> RunRecord | None:
        """End a run ``cancelled``, cancelling its in-flight calls; wait (up to ``wait_s``)
        for its holder to store the end. An ended run is returned unchanged."""
        deadline = time.monotonic() + wait_s
        while True:
            record = await self.registry.get(run_id, tenant=tenant)
            if record is None or record.finished:
                return record
            if record.status == "queued":
                if await self._end_unheld(record, "status = 'queued'"):
                    continue
            elif await self._end_unheld(record, "status = 'running' AND lease_until < now()"):
                continue
            else:
                await self.registry.request_cancel(run_id, tenant=tenant)
                held = self._held.get(run_id)
                if held is not None:
                    held.control.stop("cancel")
                else:
                    await self.hub.notify_control("cancel", run_id)
                await self._wait_end(record, deadline)
                return await self.registry.get(run_id, tenant=tenant)
            if time.monotonic() > deadline:
                return record

    async def _end_unheld(self, record: RunRecord, where: str) -> bool:
        event = _end_event(record, "cancelled")
        if not await self.log.end_unheld(record.id, record.tenant, event, where=where):
            return False
        self.hub.publish(record.id, [event])
        return True

    async def _wait_end(self, record: RunRecord, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async for event in self.subscribe(
                    record.id, tenant=record.tenant, after=record.last_seq
                ):
                    if isinstance(event, RunFinished):
                        return

    # -- execution -----------------------------------------------------------------------------

    def start(self, record: RunRecord, lease: Lease) -> asyncio.Task[RunFinished | None]:
        """Execute a run this process just claimed; the task ends when the run does."""
        held = _Held(lease=lease, control=RunControl())
        self._held[record.id] = held
        held.task = self._spawn(self._execute(record, held), f"run-{record.id}")
        return held.task

    async def _execute(self, record: RunRecord, held: _Held) -> RunFinished | None:
        try:
            services = await self.services()
            await self.registry.mark_started(
                held.lease, provider=services.provider, simulated=services.simulated
            )
            return await execute_run(
                services,
                record,
                held.lease,
                log_=self.log,
                publish=lambda events: self.hub.publish(record.id, events),
                release=self.registry.release,
                control=held.control,
            )
        except ProposalsError as exc:
            # Services could not open (no database, bad provider config): end the run failed.
            log.error("run %s could not start: %s", record.id, exc)
            with contextlib.suppress(ProposalsError):
                await self._fail_unstarted(record, held.lease, str(exc))
            return None
        finally:
            if self._held.get(record.id) is held:
                del self._held[record.id]

    async def _fail_unstarted(self, record: RunRecord, lease: Lease, error: str) -> None:
        event = _end_event(record, "failed", error)
        await self.log.append(
            lease,
            [event],
            usage=record.usage or UsageTotals(),
            progress=record.progress,
            final=("failed", None, error),
        )
        self.hub.publish(record.id, [event])

    def _on_control(self, action: str, run_id: str) -> None:
        held = self._held.get(run_id)
        if action == "cancel" and held is not None:
            held.control.stop("cancel")

    async def _heartbeat(self) -> None:
        """Renew the leases of every run held here; stop runs whose lease is gone."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat_s)
            held = dict(self._held)
            if not held:
                last_ok = time.monotonic()
                continue
            try:
                alive = await self.registry.renew(
                    [h.lease for h in held.values()], lease_s=self.lease_s
                )
            except ProposalsError as exc:
                log.warning("could not renew run leases: %s", exc)
                if time.monotonic() - last_ok > self.lease_s:
                    for h in held.values():
                        h.control.stop("lost")
                continue
            last_ok = time.monotonic()
            for run_id, h in held.items():
                if run_id not in alive:
                    if h.task is not None and not h.task.done() and h.control.graph is not None:
                        h.control.stop("lost")
                elif alive[run_id]:
                    h.control.stop("cancel")

    @property
    def running(self) -> int:
        """Runs this process executes now."""
        return len(self._held)


def _end_event(record: RunRecord, status: RunStatus, error: str | None = None) -> RunFinished:
    """The ``run_finished`` event of a run that ends without having run (further) here."""
    return RunFinished(
        run_id=record.id,
        seq=record.last_seq + 1,
        usage=record.usage,
        status=status,
        proposals=0,
        failed=0,
        elapsed_s=0.0,
        error=error,
    )
