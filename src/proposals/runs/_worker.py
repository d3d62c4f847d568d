"""Workers: claim queued runs from PostgreSQL and execute them, at most ``slots`` at once.

Any number of workers, in any processes on any hosts sharing the database, claim runs with
``FOR UPDATE SKIP LOCKED`` (each run goes to one of them). A worker wakes when a run is
queued (``NOTIFY``) and looks again every ``heartbeat_s`` for runs whose lease expired (their
holder died), which it resumes from their checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import ProposalsError
from ._manager import RunManager

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Claims queued runs (FOR UPDATE SKIP LOCKED), runs at most ``slots`` at once, heartbeats
    their leases (through its manager), re-claims runs whose lease expired and resumes them
    from the checkpoint. ``lease_s``/``heartbeat_s`` set the manager's lease timing."""

    def __init__(
        self,
        manager: RunManager,
        *,
        slots: int = 4,
        lease_s: float = 30.0,
        heartbeat_s: float = 5.0,
        worker_id: str | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        self.manager = manager
        self.slots = slots
        manager.lease_s = lease_s
        manager.heartbeat_s = heartbeat_s
        self.worker_id = worker_id or f"{manager.holder}:w{id(self) % 1000:03d}"
        self.running = 0
        """Runs this worker executes now."""
        self.peak = 0
        """Most runs this worker executed at once."""
        self.claimed = 0
        """Runs claimed so far."""

    async def run(self) -> None:
        """Claim and execute runs until cancelled; cancellation gives the runs in progress
        back to the queue (any worker resumes them from their checkpoint) and returns."""
        slots = asyncio.Semaphore(self.slots)
        tasks: set[asyncio.Task[object]] = set()

        def done(task: asyncio.Task[object]) -> None:
            tasks.discard(task)
            self.running -= 1
            slots.release()

        try:
            while True:
                await slots.acquire()
                claimed = None
                while claimed is None:
                    wake = self.manager.hub.queue_changed()
                    try:
                        claimed = await self.manager.registry.claim(
                            self.worker_id, lease_s=self.manager.lease_s
                        )
                    except ProposalsError as exc:
                        log.warning("worker %s could not claim a run: %s", self.worker_id, exc)
                    if claimed is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), self.manager.heartbeat_s)
                record, lease = claimed
                self.claimed += 1
                self.running += 1
                self.peak = max(self.peak, self.running)
                log.info(
                    "worker %s claimed run %s (attempt %d)",
                    self.worker_id,
                    record.id,
                    lease.attempt,
                )
                task: asyncio.Task[object] = self.manager.start(record, lease)  # type: ignore[assignment]
                tasks.add(task)
                task.add_done_callback(done)
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
