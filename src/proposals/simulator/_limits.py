"""Rate buckets and the counters behind ``/sim/stats``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REJECT_CAUSES", "RateLimiter", "SimStats", "format_reset"]

REJECT_CAUSES = (
    "rate_limit_rpm",
    "rate_limit_tpm",
    "context_length",
    "connection_refused",
    "fault_500",
    "fault_503",
    "fault_reset",
    "fault_stall",
    "bad_request",
)


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI writes ``x-ratelimit-reset-*``: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{int(rest)}s"


class _Bucket:
    """A token bucket: ``capacity`` units, refilled at ``rate`` per wall second."""

    __slots__ = ("capacity", "level", "limit", "rate", "stamp")

    def __init__(self, limit: int, window_s: float, burst_fraction: float, now: float) -> None:
        self.limit = limit
        self.rate = limit / window_s
        self.capacity = max(1.0, limit * burst_fraction)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` fits (a cost above capacity fits once the bucket is full)."""
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def reset_s(self) -> float:
        return (self.capacity - self.level) / self.rate

    def remaining(self) -> int:
        return max(0, math.floor(self.level))


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets over a scaled minute."""

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        *,
        time_scale: float,
        burst_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        window = 60.0 * time_scale
        fraction = burst_s / 60.0
        self._clock = clock
        now = clock()
        self.requests = _Bucket(rpm, window, fraction, now) if rpm else None
        self.tokens = _Bucket(tpm, window, fraction, now) if tpm else None

    def try_acquire(self, tokens: int) -> tuple[str | None, float]:
        """Take one request and ``tokens``; or return the cause and wall seconds to wait."""
        now = self._clock()
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)
        if self.requests is not None:
            wait = self.requests.wait_for(1)
            if wait > 0:
                return "rate_limit_rpm", wait
        if self.tokens is not None:
            wait = self.tokens.wait_for(tokens)
            if wait > 0:
                return "rate_limit_tpm", wait
        if self.requests is not None:
            self.requests.level -= 1
        if self.tokens is not None:
            self.tokens.level -= tokens
        return None, 0.0

    def charge_tokens(self, tokens: int) -> None:
        """Take tokens known only after admission (may leave the bucket in debt)."""
        if self.tokens is not None and tokens > 0:
            self.tokens.refill(self._clock())
            self.tokens.level -= tokens

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers describing the current state."""
        out: list[tuple[bytes, bytes]] = []
        now = self._clock()
        for suffix, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            bucket.refill(now)
            out.append((f"x-ratelimit-limit-{suffix}".encode(), str(bucket.limit).encode()))
            out.append(
                (f"x-ratelimit-remaining-{suffix}".encode(), str(bucket.remaining()).encode())
            )
            out.append(
                (f"x-ratelimit-reset-{suffix}".encode(), format_reset(bucket.reset_s()).encode())
            )
        return out


@dataclass
class SimStats:
    """Counters of one simulator since start or the last reset."""

    requests: int = 0
    completed: int = 0
    """Requests answered with 200 (chat completions and embeddings)."""
    embeddings: int = 0
    """Embeddings requests answered."""
    streamed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charged_tokens: int = 0
    """Tokens taken from the TPM budget by admitted requests: prompt + ``max_tokens`` (the
    provider's estimate), or the actual completion when ``max_tokens`` was not given."""
    rejects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_CAUSES, 0))
    status: dict[str, int] = field(default_factory=dict)
    connections_total: int = 0
    connections: int = 0
    peak_connections: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0

    def reset(self) -> None:
        """Zero the counters; current gauges stay, peaks restart from them."""
        keep = (self.connections, self.in_flight)
        self.__init__()  # type: ignore[misc]
        self.connections, self.in_flight = keep
        self.peak_connections, self.peak_in_flight = keep

    def connection_opened(self) -> None:
        self.connections_total += 1
        self.connections += 1
        self.peak_connections = max(self.peak_connections, self.connections)

    def request_started(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def count_status(self, status: int) -> None:
        key = str(status)
        self.status[key] = self.status.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "embeddings": self.embeddings,
            "streamed": self.streamed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "charged_tokens": self.charged_tokens,
            "rejects": dict(self.rejects),
            "status": dict(self.status),
            "connections_total": self.connections_total,
            "connections": self.connections,
            "peak_connections": self.peak_connections,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }
