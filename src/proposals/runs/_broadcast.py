"""Events to subscribers in any process: PostgreSQL LISTEN/NOTIFY plus a bounded tail per run.

One listening connection per process receives ``NOTIFY`` from every writer (payload
``"<run id> <seq>"``, sent when the events' transaction commits). For each run that has
subscribers the hub keeps a :class:`_Feed`: the newest events (at most ``tail`` of them) and
the highest seq known to be stored. Events written by this process are handed over directly
after their commit; others are read from the log once per feed, not once per subscriber.

A subscriber keeps only its own position. It takes the next event from the feed's tail when
it is there and reads the log otherwise (a slow subscriber that fell behind the tail pages
through the log): memory never grows with how far behind a subscriber is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence

import psycopg

from ..db import Database
from ._events import RunEvent, RunFinished
from ._log import EVENTS_CHANNEL, EventLog
from ._store import QUEUE_CHANNEL

__all__ = ["CONTROL_CHANNEL", "EventHub"]

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "proposals_control"
"""NOTIFY channel telling a run's holder to act (payload: ``"cancel <run id>"``)."""

_PAGE = 500
"""Events read from the log per query when a subscriber catches up."""


class _Feed:
    """The stored events of one run that subscribers of this process have not all seen yet."""

    def __init__(self, run_id: str, head: int, tail: int) -> None:
        self.run_id = run_id
        self.head = head
        """Highest seq known to be stored."""
        self.events: deque[RunEvent] = deque(maxlen=tail)
        self.subscribers = 0
        self.changed = asyncio.Event()
        self.lock = asyncio.Lock()
        self.refreshed = time.monotonic()

    def add(self, events: Sequence[RunEvent]) -> bool:
        """Append events that continue the tail; False when one is missing before them."""
        grew = False
        for event in events:
            if event.seq <= self.head:
                continue
            if event.seq != self.head + 1:
                return False
            self.events.append(event)
            self.head = event.seq
            grew = True
        if grew:
            self.changed.set()
            self.changed = asyncio.Event()
        return True

    def get(self, seq: int) -> RunEvent | None:
        """The event ``seq`` if it is in the tail."""
        if not self.events:
            return None
        index = seq - self.events[0].seq
        return self.events[index] if 0 <= index < len(self.events) else None


class EventHub:
    """This process's end of the broadcast. Start :meth:`listen` in a task; use
    :meth:`subscribe`; call :meth:`publish` after storing events."""

    def __init__(
        self,
        database: Database,
        log_: EventLog,
        *,
        tail: int = 1024,
        poll_s: float = 5.0,
    ) -> None:
        self._database = database
        self._log = log_
        self._tail = tail
        self._poll_s = poll_s
        self._feeds: dict[str, _Feed] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        self._queue_wake = asyncio.Event()
        self.on_control: Callable[[str, str], None] | None = None
        """Called with (action, run id) for every control notification."""
        self.listening = asyncio.Event()
        """Set while the listening connection is up."""

    # -- notifications ---------------------------------------------------------------------

    async def listen(self) -> None:
        """Receive notifications until cancelled; reconnect (and re-read feeds) on failure."""
        backoff = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._database.url, autocommit=True)
                async with conn:
                    for channel in (EVENTS_CHANNEL, CONTROL_CHANNEL, QUEUE_CHANNEL):
                        await conn.execute(f"LISTEN {channel}".encode())
                    self.listening.set()
                    backoff = 0.2
                    # Anything sent while we were not listening is read from the log now.
                    self._wake_queue()
                    for feed in list(self._feeds.values()):
                        self._spawn_refresh(feed)
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except psycopg.Error as exc:
                log.warning("event listener lost its connection (%s); reconnecting", exc)
            finally:
                self.listening.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == EVENTS_CHANNEL:
            run_id, _, seq = payload.rpartition(" ")
            feed = self._feeds.get(run_id)
            if feed is not None and seq.isdigit() and int(seq) > feed.head:
                self._spawn_refresh(feed)
        elif channel == QUEUE_CHANNEL:
            self._wake_queue()
        elif channel == CONTROL_CHANNEL and self.on_control is not None:
            action, _, run_id = payload.partition(" ")
            self.on_control(action, run_id)

    def _wake_queue(self) -> None:
        self._queue_wake.set()
        self._queue_wake = asyncio.Event()

    def queue_changed(self) -> asyncio.Event:
        """An event set the next time a run is queued (or the listener reconnects)."""
        return self._queue_wake

    async def notify_control(self, action: str, run_id: str) -> None:
        """Tell whichever process holds ``run_id`` to ``action`` it (e.g. ``cancel``)."""
        async with self._database.pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, f"{action} {run_id}"))

    # -- feeds ------------------------------------------------------------------------------

    def publish(self, run_id: str, events: Sequence[RunEvent]) -> None:
        """Hand over events this process just stored (no database round trip)."""
        feed = self._feeds.get(run_id)
        if feed is not None and not feed.add(events):
            self._spawn_refresh(feed)

    def _spawn_refresh(self, feed: _Feed) -> None:
        # A short task kept by the hub (cancelled by :meth:`close`); its subscribers wait on
        # ``changed``. An error is logged and their next poll reads the log again.
        task = asyncio.get_running_loop().create_task(self._refresh(feed))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("reading new run events failed: %s", task.exception())

    async def close(self) -> None:
        """Cancel the reads in progress."""
        tasks = list(self._refreshing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _refresh(self, feed: _Feed) -> None:
        """Read what the log holds beyond the feed's head (one reader per feed at a time)."""
        async with feed.lock:
            feed.refreshed = time.monotonic()
            while True:
                events = await self._log.read(
                    feed.run_id, after=feed.head, limit=_PAGE, tenant=None
                )
                if not events:
                    return
                feed.add(events)
                if len(events) < _PAGE:
                    return

    async def subscribe(
        self, run_id: str, *, tenant: str, after: int = 0
    ) -> AsyncIterator[RunEvent]:
        """Every stored event of ``run_id`` with seq > ``after``, then live ones, each once and
        in order, ending after ``run_finished``. The caller checked that the run exists."""
        feed = self._feeds.get(run_id)
        if feed is None:
            head = await self._log.last_seq(run_id)
            # another subscriber may have made the feed while we read
            feed = self._feeds.setdefault(run_id, _Feed(run_id, head, self._tail))
        feed.subscribers += 1
        last = after
        try:
            while True:
                event = feed.get(last + 1)
                if event is not None:
                    yield event
                    last = event.seq
                    if isinstance(event, RunFinished):
                        return
                    continue
                if feed.head > last:
                    # Behind the tail (or the tail has not caught up yet): read the log.
                    page = await self._log.read(run_id, after=last, limit=_PAGE, tenant=tenant)
                    for event in page:
                        yield event
                        last = event.seq
                        if isinstance(event, RunFinished):
                            return
                    if page:
                        continue
                changed = feed.changed
                if feed.head > last:
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), self._poll_s)
                except TimeoutError:
                    # A notification may have been missed (listener reconnecting): look.
                    if time.monotonic() - feed.refreshed >= self._poll_s / 2:
                        await self._refresh(feed)
        finally:
            feed.subscribers -= 1
            if feed.subscribers == 0 and self._feeds.get(run_id) is feed:
                del self._feeds[run_id]
