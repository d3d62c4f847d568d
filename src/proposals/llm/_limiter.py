"""Adaptive concurrency limit (AIMD): the one place the gateway bounds calls in flight.

The limit starts at ``start`` and stays within ``[minimum, maximum]``.

* **Slow start.** Until the provider first pushes back, every successful call that found the
  limit in use raises it by one, so it doubles about once per round trip; when the provider's
  rate headers say more calls would be accepted right now, the limit jumps there
  (:meth:`AdaptiveLimiter.hint`).
* **Multiplicative decrease.** A 429 (unless the rate budget knows the limits: then the
  budget and the 429's pause pace it), a refused or reset connection or a timeout multiplies
  the limit by ``decrease_factor``, at most once per window: a failure of a call that started
  before the last cut (or within ``cooldown_s`` of it) is the same congestion episode and
  does not cut again.
* **Learned ceiling.** A refused/reset connection or a timeout is a *capacity* signal: the
  number of other calls still in flight when it arrives (released slots excluded) bounds what
  the provider holds. One such signal proves nothing (a flaky network resets a connection at
  random, whatever the load), so a ceiling is learned only from a corroborated burst: at least
  ``corroboration`` capacity signals making up at least half of the last ``outcome_window``
  outcomes (successes and capacity signals). The lowest count among those signals, times
  ``ceiling_margin``, becomes the ceiling and the limit is clamped to it. Below it the limit regrows quickly (+1 per success); above it only by slow
  probing (+1 per ``probe_windows`` limits' worth of successes), so the provider is not
  pushed over its cap again and again. A 429 cuts but teaches no ceiling (it is about rate,
  which the rate budget paces).
* **Additive increase.** With no known ceiling, +1 per limit's worth of successes.

Only successes while at least half the limit is in use grow it: a limit nobody uses tells
nothing about the provider. Nor do successes of calls admitted before the last cut: they
drain by themselves, and counting them would regrow the limit before the provider's
answer to the cut limit is known (and overshoot a connection cap while refusals of the
same episode are still coming in).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

__all__ = ["AdaptiveLimiter", "LimiterTicket"]


@dataclass(frozen=True, slots=True)
class LimiterTicket:
    """A slot held by one call: when and at which position it was admitted."""

    generation: int
    """Number of cuts made before this call started."""
    position: int
    """Calls in flight right after this one was admitted (itself included)."""
    saturated: bool
    """At least half the limit was in use (or calls were waiting) when this was admitted."""
    started_at: float


class AdaptiveLimiter:
    """AIMD concurrency limiter with a learned ceiling. See the module docstring."""

    def __init__(
        self,
        *,
        minimum: int = 1,
        maximum: int = 1024,
        start: int = 16,
        decrease_factor: float = 0.7,
        cooldown_s: float = 0.0,
        ceiling_margin: float = 0.95,
        probe_windows: float = 8.0,
        slow_start: bool = True,
        corroboration: int = 3,
        outcome_window: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError("need 1 <= minimum <= maximum")
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError("decrease_factor must be between 0 and 1")
        self.minimum = minimum
        self.maximum = maximum
        self.decrease_factor = decrease_factor
        self.cooldown_s = cooldown_s
        self.ceiling_margin = ceiling_margin
        self.probe_windows = probe_windows
        self._clock = clock
        self._limit = float(min(max(start, minimum), maximum))
        self._slow_start = slow_start
        self._ceiling: int | None = None
        self._in_flight = 0
        self._peak = 0
        self._peak_settled = 0
        self._by_generation: collections.Counter[int] = collections.Counter()
        """Calls in flight by the generation they were admitted in."""
        self._generation = 0
        self._last_cut_at = -math.inf
        self._waiters: collections.deque[asyncio.Future[LimiterTicket]] = collections.deque()
        self.corroboration = max(1, corroboration)
        self._outcomes: collections.deque[int | None] = collections.deque(
            maxlen=max(outcome_window, self.corroboration)
        )
        """The latest outcomes: ``None`` for a success, the capacity it suggests for a
        capacity signal."""

    # --- observation ------------------------------------------------------------------------
    @property
    def limit(self) -> int:
        """Calls allowed in flight right now."""
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """Most calls ever in flight at once."""
        return self._peak

    @property
    def peak_since_first_cut(self) -> int:
        """Most calls in flight when a call was admitted after the first cut episode (0 before).

        An admission counts once no call admitted before the latest cut is still in flight:
        those drain by themselves (their answers, or more push-back, still arriving), and
        counting them would measure the episode, not the concurrency the limiter chose once
        it had learned the provider pushes back."""
        return self._peak_settled

    @property
    def cuts(self) -> int:
        """Multiplicative decreases made so far."""
        return self._generation

    @property
    def ceiling(self) -> int | None:
        """The learned capacity ceiling, if a capacity signal was seen."""
        return self._ceiling

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # --- admission --------------------------------------------------------------------------
    def _admit(self) -> LimiterTicket:
        self._in_flight += 1
        self._by_generation[self._generation] += 1
        saturated = bool(self._waiters) or self._in_flight >= self._limit / 2
        self._peak = max(self._peak, self._in_flight)
        if self._generation and min(self._by_generation) >= self._generation:
            self._peak_settled = max(self._peak_settled, self._in_flight)
        return LimiterTicket(self._generation, self._in_flight, saturated, self._clock())

    def _forget(self, ticket: LimiterTicket) -> None:
        self._in_flight -= 1
        self._by_generation[ticket.generation] -= 1
        if not self._by_generation[ticket.generation]:
            del self._by_generation[ticket.generation]

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(self._admit())

    async def acquire(self) -> LimiterTicket:
        """Wait for a slot (FIFO) and take it."""
        if not self._waiters and self._in_flight < self.limit:
            return self._admit()
        fut: asyncio.Future[LimiterTicket] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted at the moment we were cancelled: hand the slot on.
                self._forget(fut.result())
                self._wake()
            else:
                with suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self, ticket: LimiterTicket) -> None:
        """Give the slot of ``ticket`` back (without feedback; see :meth:`on_success` and
        :meth:`on_overload`)."""
        self._forget(ticket)
        self._wake()

    # --- feedback ---------------------------------------------------------------------------
    def on_success(self, ticket: LimiterTicket) -> None:
        """A call admitted with ``ticket`` succeeded: grow the limit if it was in use."""
        self._outcomes.append(None)
        if ticket.generation != self._generation:
            return  # admitted before the last cut: it tells nothing about the cut limit
        busy = self._in_flight + len(self._waiters) >= self._limit / 2
        if not (ticket.saturated or busy):
            return
        limit = self._limit
        if self._slow_start or (self._ceiling is not None and limit + 1 <= self._ceiling):
            limit += 1.0
        elif self._ceiling is not None:
            limit += 1.0 / (limit * self.probe_windows)
        else:
            limit += 1.0 / limit
        self._limit = min(limit, float(self.maximum))
        self._wake()

    def hint(self, allowed: int) -> None:
        """The provider says about ``allowed`` calls could run now (from its rate headers).

        During slow start the limit jumps there (up to ``maximum``) instead of doubling its
        way up round trip by round trip; afterwards hints are ignored: push-back is the
        better signal.
        """
        if self._slow_start and allowed > self._limit:
            self._limit = float(min(allowed, self.maximum))
            self._wake()

    def on_overload(self, ticket: LimiterTicket, *, capacity: bool) -> bool:
        """The provider pushed back on the call with ``ticket``; cut once per window.

        ``capacity`` marks a capacity signal (refused/reset connection, timeout), which also
        teaches the ceiling. Returns True when the limit was cut.
        """
        if capacity:
            # The calls still in flight when one is refused are about what the provider
            # holds (those also being refused leave soon after): the lowest such count in
            # a corroborated burst estimates its capacity.
            held = min(ticket.position - 1, self._in_flight)
            self._outcomes.append(max(self.minimum, math.floor(held * self.ceiling_margin)))
            caps = [c for c in self._outcomes if c is not None]
            if len(caps) >= self.corroboration and 2 * len(caps) >= len(self._outcomes):
                cap = min(caps)
                if self._ceiling is None or cap < self._ceiling:
                    self._ceiling = cap
                    # Calls already admitted drain by themselves; admit no more than the cap.
                    self._limit = min(self._limit, float(cap))
        now = self._clock()
        if ticket.generation != self._generation or now - self._last_cut_at < self.cooldown_s:
            return False
        self._slow_start = False
        self._limit = max(float(self.minimum), self._limit * self.decrease_factor)
        self._generation += 1
        self._last_cut_at = now
        return True
