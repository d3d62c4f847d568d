"""A run's events, live: Server-Sent Events and WebSocket, both resumable.

SSE: each event is ``id: <seq>``, ``event: <type>``, ``data: <event JSON>``; a client that
reconnects with ``Last-Event-ID`` (or ``?after=N``) gets every stored event after it, then the
live ones, each once and in order; a ``: heartbeat`` comment goes out whenever the stream has
been idle for the heartbeat interval (proxies close idle connections); the stream ends after
the terminal ``run_finished`` event. WebSocket: the same events as JSON text frames, from
``?after=N``, then closed (1000); 4401 for a missing or bad key, 4404 for an unknown run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from ..errors import NotFound
from ..runs import RunEvent, RunManager
from ._auth import Tenant, websocket_tenant
from ._state import state_of

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"])

_BUFFER = 64
"""Events read ahead per subscriber; past it the subscription waits (and the run manager
serves a slow subscriber from the log), so memory stays bounded."""


@contextlib.asynccontextmanager
async def _events(
    manager: RunManager, run_id: str, tenant: str, after: int
) -> AsyncIterator[asyncio.Queue[RunEvent | None]]:
    """A bounded queue fed by the run's subscription; ``None`` marks its end. The feeding
    task is cancelled when the caller leaves (client gone)."""
    queue: asyncio.Queue[RunEvent | None] = asyncio.Queue(maxsize=_BUFFER)

    async def pump() -> None:
        try:
            async for event in manager.subscribe(run_id, tenant=tenant, after=after):
                await queue.put(event)
        except Exception:
            log.exception("event stream of run %s broke off", run_id)
        await queue.put(None)

    task = asyncio.get_running_loop().create_task(pump(), name=f"events-{run_id}")
    try:
        yield queue
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


_FRAMES_KEPT = 4096
_frames: OrderedDict[tuple[str, int], str] = OrderedDict()


def _frame(event: RunEvent) -> str:
    """The SSE frame of an event, serialised once per process however many subscribers
    follow the run (a few recent frames are kept)."""
    key = (event.run_id, event.seq)
    frame = _frames.get(key)
    if frame is None:
        frame = f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"
        _frames[key] = frame
        if len(_frames) > _FRAMES_KEPT:
            _frames.popitem(last=False)
    return frame


async def _next_batch(
    queue: asyncio.Queue[RunEvent | None], heartbeat_s: float
) -> list[RunEvent | None] | None:
    """Every event waiting in ``queue`` (at least one), or None after ``heartbeat_s`` idle."""
    if queue.empty():
        try:
            async with asyncio.timeout(heartbeat_s):
                first = await queue.get()
        except TimeoutError:
            return None
    else:
        first = queue.get_nowait()
    batch = [first]
    while first is not None and not queue.empty():
        item = queue.get_nowait()
        batch.append(item)
        if item is None:
            break
    return batch


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 404: {}},
)
async def events(
    request: Request,
    tenant: Tenant,
    run_id: str,
    after: Annotated[int, Query(ge=0, description="replay events with seq > after")] = 0,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> StreamingResponse:
    """The run's events as Server-Sent Events (``Last-Event-ID`` wins over ``after``)."""
    state = state_of(request)
    manager: RunManager = state.manager
    record = await manager.get(run_id, tenant=tenant)
    if record is None:
        raise NotFound(f"no run {run_id!r}")
    start = last_event_id if last_event_id is not None else after
    heartbeat = state.options.heartbeat_s
    seen_end = record.finished and start >= record.last_seq

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        if seen_end:
            return  # the client already has the terminal event
        async with _events(manager, run_id, tenant, start) as queue:
            while True:
                batch = await _next_batch(queue, heartbeat)
                if batch is None:
                    yield ": heartbeat\n\n"
                    continue
                # Events that arrived together go out in one write.
                text = "".join(_frame(e) for e in batch if e is not None)
                if text:
                    yield text
                if batch[-1] is None:
                    return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/runs/{run_id}/ws")
async def events_ws(
    websocket: WebSocket, run_id: str, after: Annotated[int, Query(ge=0)] = 0
) -> None:
    """The run's events as JSON text frames (key in ``?token=`` or the Authorization header)."""
    tenant = await websocket_tenant(websocket)
    await websocket.accept()
    if tenant is None:
        await websocket.close(4401, "missing or invalid API key")
        return
    manager: RunManager = state_of(websocket).manager
    record = await manager.get(run_id, tenant=tenant)
    if record is None:
        await websocket.close(4404, f"no run {run_id!r}")
        return
    if record.finished and after >= record.last_seq:
        await websocket.close(1000)  # the client already has the terminal event
        return

    async def send() -> None:
        async with _events(manager, run_id, tenant, after) as queue:
            while (event := await queue.get()) is not None:
                await websocket.send_text(event.model_dump_json())
        await websocket.close(1000)

    async def watch() -> None:
        # Nothing is expected from the client; reading notices it leaving while idle.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    sender = asyncio.get_running_loop().create_task(send())
    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        results = await asyncio.gather(sender, watcher, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(
            result, WebSocketDisconnect | RuntimeError
        ):
            log.warning("websocket of run %s ended: %r", run_id, result)
