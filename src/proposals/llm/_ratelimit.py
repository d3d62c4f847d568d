"""Requests-per-minute and tokens-per-minute budgets, configured or learned from headers.

Each budget is a token bucket. A call takes one request and its estimated tokens before it
starts (waiting, in arrival order, until both are available); the token estimate is corrected
with what the provider really charged afterwards.

A configured limit ``L`` per minute refills at ``L / window_s`` per second (``window_s`` is 60
for a real provider; less for a time-compressed simulator) and holds ``burst_s`` seconds'
worth. Response headers teach the rest:

* ``x-ratelimit-limit-*`` sets the limit (a configured one stays an upper bound);
* ``x-ratelimit-remaining-*`` resets the local level to what the provider says is left (less
  what calls not yet sent have taken);
* ``x-ratelimit-remaining-*`` with ``x-ratelimit-reset-*`` (time until the provider's bucket is
  full again) satisfy ``remaining + rate * reset = capacity`` for the provider's own bucket;
  a least-squares fit over recent responses gives its true refill rate and capacity, so pacing
  follows the provider without knowing how long its "minute" is.

A 429's ``retry-after`` pauses every call, not only the one refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Permit", "RateBudget", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_FIT_POINTS = 64
_MARGIN = 0.01


def parse_duration(value: str | None) -> float | None:
    """Seconds in an OpenAI reset header (``"6m0s"``, ``"20ms"``, ``"1.5s"``, ``"2"``)."""
    if value is None:
        return None
    text = value.strip().replace(" ", "")
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


class _Bucket:
    """One budget (requests or tokens)."""

    def __init__(
        self, configured: float | None, window_s: float, burst_s: float, now: float
    ) -> None:
        self.configured = configured
        self.learned: float | None = None
        self.window_s = window_s
        self.burst_s = burst_s
        self.fit_rate: float | None = None
        self.fit_capacity: float | None = None
        self.points: collections.deque[tuple[float, float]] = collections.deque(maxlen=_FIT_POINTS)
        self.share = 1.0
        """This process's part of the endpoint's budget (1: all of it)."""
        self.stamp = now
        self.level = self.capacity if self.active else 0.0

    @property
    def per_minute(self) -> float | None:
        values = [v for v in (self.configured, self.learned) if v]
        return min(values) if values else None

    @property
    def active(self) -> bool:
        return self.per_minute is not None

    @property
    def rate(self) -> float:
        """Refill per second (this process's share)."""
        return self._endpoint_rate * self.share

    @property
    def capacity(self) -> float:
        """Most the bucket holds (this process's share)."""
        return max(1.0, self._endpoint_capacity * self.share)

    @property
    def _endpoint_rate(self) -> float:
        per_minute = self.per_minute
        if per_minute is None:
            return math.inf
        nominal = per_minute / self.window_s
        if self.fit_rate is None:
            return nominal
        # The fit reflects the provider's real clock; a configured limit still bounds it.
        if self.configured and self.configured <= (self.learned or math.inf):
            return min(self.fit_rate, self.configured / self.window_s)
        return self.fit_rate

    @property
    def _endpoint_capacity(self) -> float:
        per_minute = self.per_minute
        if per_minute is None:
            return math.inf
        if self.fit_capacity is not None:
            return max(1.0, self.fit_capacity)
        return max(1.0, per_minute * self.burst_s / self.window_s)

    def refill(self, now: float) -> None:
        if self.active:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 when it is, or when unlimited)."""
        if not self.active:
            return 0.0
        need = min(amount, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate

    def take(self, amount: float) -> None:
        if self.active:
            self.level -= min(amount, self.capacity)

    def observe(
        self,
        limit: float | None,
        remaining: float | None,
        reset_s: float | None,
        now: float,
        pending: float,
    ) -> None:
        if limit is None or limit <= 0:
            return
        self.refill(now)
        was_active = self.active
        self.learned = limit
        if not was_active:
            self.level = self.capacity
        if remaining is None:
            self.level = min(self.level, self.capacity)
            return
        if reset_s is not None:
            self.points.append((remaining, reset_s))
            self._fit(limit)
        # The provider's word is fresher than our model of its bucket, in both directions
        # (a too-slow local refill must not starve calls the provider would accept). Budget
        # taken for calls it has not seen yet is not in its ``remaining``: subtract it, or it
        # would be spent twice.
        # A small margin covers calls sent but still on their way to the provider.
        margin = _MARGIN * self.capacity
        self.level = min(self.capacity, remaining * self.share - pending - margin)

    def _fit(self, limit: float) -> None:
        """Least squares of ``remaining = capacity - rate * reset`` over recent responses."""
        points = [p for p in self.points if p[0] > 0 and p[1] > 0]  # 0 may be clipped debt
        if len(points) < 4:
            return
        xs = [p[1] for p in points]
        ys = [p[0] for p in points]
        spread = max(ys) - min(ys)
        if spread < max(2.0, 0.02 * limit):
            return
        mx = sum(xs) / len(xs)
        my = sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx <= 0:
            return
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        rate = -slope
        capacity = my + rate * mx
        if rate > 0 and capacity >= 1:
            self.fit_rate = rate
            self.fit_capacity = capacity


@dataclass(frozen=True, slots=True)
class Permit:
    """Budget taken by one call: what was deducted locally, and how long it waited."""

    requests: int
    tokens: int
    waited_s: float


class RateBudget:
    """RPM/TPM pacing shared by every call of one gateway. See the module docstring."""

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        learn: bool = True,
        window_s: float = 60.0,
        burst_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        now = clock()
        self._requests = _Bucket(float(rpm) if rpm else None, window_s, burst_s, now)
        self._tokens = _Bucket(float(tpm) if tpm else None, window_s, burst_s, now)
        self._learn = learn
        self._clock = clock
        self._changed = asyncio.Event()
        self._paused_until = -math.inf
        self._lock = asyncio.Lock()
        self._pending_requests = 0
        self._pending_tokens = 0
        self.waited_s = 0.0
        """Total seconds calls spent waiting for budget (summed over calls)."""

    @property
    def active(self) -> bool:
        """Some limit is known (configured or learned), or calls are paused."""
        return self._requests.active or self._tokens.active or self._paused_until > self._clock()

    @property
    def paced(self) -> bool:
        """A requests or tokens limit is known (configured or learned): calls are paced."""
        return self._requests.active or self._tokens.active

    def stale(self, permit: Permit) -> bool:
        """The permit was free (no limit known then) but limits are known now."""
        return permit.requests == 0 and permit.tokens == 0 and self.active

    @property
    def rpm(self) -> int | None:
        """The requests-per-minute limit in force (configured and/or learned)."""
        value = self._requests.per_minute
        return None if value is None else int(value)

    @property
    def tpm(self) -> int | None:
        """The tokens-per-minute limit in force (configured and/or learned)."""
        value = self._tokens.per_minute
        return None if value is None else int(value)

    def available(self, tokens: int) -> int | None:
        """Calls of ``tokens`` tokens the budget would admit right now (None: no limit known)."""
        counts = []
        now = self._clock()
        if self._requests.active:
            self._requests.refill(now)
            counts.append(self._requests.level)
        if self._tokens.active:
            self._tokens.refill(now)
            counts.append(self._tokens.level / max(1, tokens))
        return max(0, int(min(counts))) if counts else None

    def describe(self) -> dict[str, float | None]:
        """Limits, fitted refill rates (per second) and capacities, for stats."""
        out: dict[str, float | None] = {}
        for name, bucket in (("requests", self._requests), ("tokens", self._tokens)):
            out[f"{name}_per_minute"] = bucket.per_minute
            out[f"{name}_per_s"] = bucket.rate if bucket.active else None
            out[f"{name}_capacity"] = bucket.capacity if bucket.active else None
        return out

    def _delay(self, now: float, tokens: int) -> float:
        self._requests.refill(now)
        self._tokens.refill(now)
        return max(
            self._paused_until - now, self._requests.wait_for(1), self._tokens.wait_for(tokens)
        )

    async def acquire(self, tokens: int | Callable[[], int]) -> Permit:
        """Take one request and ``tokens`` tokens, waiting for them.

        ``tokens`` may be a function, asked again each time the call is at the head of the
        queue and checks the budget (a call's size may be decided late: see
        ``LLMGateway.complete``'s ``expected_tokens``); the permit holds what was taken.
        Hand the returned permit to :meth:`dispatched` when the request is sent.
        """
        size = tokens if callable(tokens) else lambda: tokens
        if not self.active:
            return Permit(0, 0, 0.0)
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                amount = size()
                delay = self._delay(now, amount)
                if delay <= 0:
                    break
                # Sleep until the budget should suffice, or until a response says otherwise.
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._changed.wait()
                waited += self._clock() - now
            permit = Permit(
                1 if self._requests.active else 0, amount if self._tokens.active else 0, waited
            )
            self._requests.take(permit.requests)
            self._tokens.take(permit.tokens)
        self._pending_requests += permit.requests
        self._pending_tokens += permit.tokens
        self.waited_s += waited
        return permit

    def dispatched(self, permit: Permit) -> None:
        """The call holding ``permit`` is being sent: the provider will count it itself."""
        self._pending_requests -= permit.requests
        self._pending_tokens -= permit.tokens

    def correct(self, estimated: int, charged: int) -> None:
        """Replace a call's token estimate by what the provider charged for it."""
        if self._tokens.active and estimated != charged:
            self._tokens.refill(self._clock())
            self._tokens.level = min(
                self._tokens.capacity, self._tokens.level + estimated - charged
            )

    def set_share(self, share: float) -> None:
        """Pace at ``share`` (0-1] of the endpoint's limits: the other processes calling it
        have the rest (see ``_shared``). Configured and learned limits, and the remaining
        budget the provider reports, are the endpoint's; this process keeps its part."""
        now = self._clock()
        for bucket in (self._requests, self._tokens):
            bucket.refill(now)
            bucket.share = max(1e-6, min(1.0, share))
            bucket.level = min(bucket.level, bucket.capacity)
        self._changed.set()

    def pause(self, seconds: float) -> None:
        """No call starts for ``seconds`` (the provider said so with ``retry-after``)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
        self._changed.set()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn limits and remaining budget from ``x-ratelimit-*`` response headers."""
        if not self._learn:
            return
        self._changed.set()
        now = self._clock()
        for bucket, kind in ((self._requests, "requests"), (self._tokens, "tokens")):
            bucket.observe(
                _number(headers, f"x-ratelimit-limit-{kind}"),
                _number(headers, f"x-ratelimit-remaining-{kind}"),
                parse_duration(headers.get(f"x-ratelimit-reset-{kind}")),
                now,
                self._pending_requests if kind == "requests" else self._pending_tokens,
            )
