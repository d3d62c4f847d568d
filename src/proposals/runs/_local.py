"""``generate`` / ``resume``: one run executed in this process, for scripts and the README.

```python
async with generate(request, settings) as run:     # a RunManager runs it here
    async for event in run.events():               # stored, then live; ends with run_finished
        ...
    result = await run.result()
```

The run belongs to a :class:`~proposals.runs.RunManager` opened for the block (or on the
given ``services``). Leaving the block normally waits for the run to end; leaving it with an
exception cancels the run (it ends ``cancelled``, and can be resumed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Self

from ..config import DEFAULT_TENANT, Settings
from ..errors import RuntimeFailure
from ..pipeline import ProposalRequest, ProposalResult
from ._events import RunEvent, RunFinished
from ._manager import RunManager
from ._services import Services

__all__ = ["Run", "generate", "resume"]


class Run:
    """A run executed here and followed from its first event. Use via :func:`generate`."""

    def __init__(
        self,
        settings: Settings,
        *,
        request: ProposalRequest | None,
        resume_id: str | None,
        services: Services | None,
        run_id: str | None,
        service_options: dict[str, Any],
    ) -> None:
        self._settings = settings
        self._request = request
        self._resume_id = resume_id
        self._services = services
        self._wanted_id = run_id
        self._options = service_options
        self._manager: RunManager | None = None
        self._finished: RunFinished | None = None
        self._after = 0
        self.run_id = ""

    async def __aenter__(self) -> Self:
        manager = await RunManager.open(self._settings, services=self._services, **self._options)
        try:
            if self._request is not None:
                record = await manager.submit(self._request, run_here=True, run_id=self._wanted_id)
            else:
                assert self._resume_id is not None
                record = await manager.resume(self._resume_id, run_here=True)
                self._after = record.last_seq
        except BaseException:
            await manager.close()
            raise
        self._manager = manager
        self.run_id = record.id
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        manager = self._manager
        assert manager is not None
        try:
            if exc is not None:
                await manager.cancel(self.run_id)
            elif self._finished is None:
                await self._wait()
        finally:
            await manager.close()

    @property
    def manager(self) -> RunManager:
        assert self._manager is not None, "use the run inside 'async with'"
        return self._manager

    async def events(self) -> AsyncIterator[RunEvent]:
        """This run's events from its (re)start, ending with ``run_finished``."""
        async for event in self.manager.subscribe(
            self.run_id, tenant=DEFAULT_TENANT, after=self._after
        ):
            self._after = event.seq
            if isinstance(event, RunFinished):
                self._finished = event
            yield event

    async def _wait(self) -> RunFinished:
        if self._finished is None:
            async for _ in self.events():
                pass
        assert self._finished is not None
        return self._finished

    async def result(self) -> ProposalResult:
        """Wait for the end of the run; its result (raises if it failed or was cancelled)."""
        finished = await self._wait()
        if finished.result is None:
            raise RuntimeFailure(finished.error or f"run {self.run_id} ended {finished.status}")
        return finished.result


def generate(
    request: ProposalRequest,
    settings: Settings,
    *,
    services: Services | None = None,
    run_id: str | None = None,
    **service_options: Any,
) -> Run:
    """Generate proposals for ``request`` here: ``async with generate(...) as run``.

    ``services`` shares already-open services between runs; without them they are opened
    from ``settings`` (``service_options`` go to :func:`open_services`).
    """
    return Run(
        settings,
        request=request,
        resume_id=None,
        services=services,
        run_id=run_id,
        service_options=service_options,
    )


def resume(
    run_id: str,
    settings: Settings,
    *,
    services: Services | None = None,
    **service_options: Any,
) -> Run:
    """Continue run ``run_id`` here from its last checkpoint (same use as :func:`generate`)."""
    return Run(
        settings,
        request=None,
        resume_id=run_id,
        services=services,
        run_id=None,
        service_options=service_options,
    )
