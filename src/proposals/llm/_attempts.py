"""One logical request: the retry loop around HTTP attempts.

Each attempt takes RPM/TPM budget, then a concurrency slot; a success feeds the limiter and the
rate budgets what the provider said; a failure is classified, taught to the limiter and budgets,
and either waited out (jittered backoff, ``retry-after`` honoured) or raised as the gateway's
own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import openai

from ..errors import ProposalsError
from ..tokens import count_tokens
from ._errors import ContextOverflowError, NonRetryableError, RetriesExhausted
from ._events import CallRetry
from ._limiter import AdaptiveLimiter, LimiterTicket
from ._output import Reply, reply_from
from ._ratelimit import RateBudget
from ._retry import Failure, RetryPolicy, classify
from ._shared import SharedLimiter
from ._stall import StallWatch, Watched

__all__ = ["AttemptLoop", "Attempts"]

T = TypeVar("T")


class Attempts:
    """Mutable per-call tally shared by the send loop and the call (repairs included)."""

    __slots__ = ("completion", "count", "prompt")

    def __init__(self) -> None:
        self.count = 0
        self.prompt = 0
        self.completion = 0


class AttemptLoop:
    """Sends requests through ``client`` under ``limiter`` and ``rate``, retrying per
    ``policy``; ``emit`` receives a :class:`CallRetry` before each wait."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        limiter: AdaptiveLimiter | SharedLimiter,
        rate: RateBudget,
        policy: RetryPolicy,
        rng: random.Random,
        emit: Callable[[CallRetry], None],
        stalls: StallWatch | None = None,
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._rate = rate
        self._policy = policy
        self._rng = rng
        self._emit = emit
        self._stalls = stalls or StallWatch(None)
        self.http_requests = 0
        """HTTP attempts sent (retries and repairs included)."""
        self.retries: Counter[str] = Counter()
        """Retries by cause."""

    async def send(
        self,
        model: str,
        msgs: list[dict[str, Any]],
        prompt_estimate: int,
        response_format: dict[str, Any] | None,
        params: dict[str, Any],
        max_tokens: int | Callable[[], int | None] | None,
        timeout_s: float,
        tally: Attempts,
        base: dict[str, Any],
    ) -> tuple[Reply, int | None]:
        """One chat completion request, retried per the policy; the reply and the
        ``max_tokens`` it was sent with. ``prompt_estimate`` is the caller's count of ``msgs``
        (a prompt is tokenized once). ``max_tokens`` may be a function: it is asked when an
        attempt is admitted (at the head of the rate budget's queue, and again once a
        concurrency slot is free), so a call that waited is sized with what is known then."""
        kwargs: dict[str, Any] = dict(params)
        if response_format is not None:
            kwargs["response_format"] = response_format
        node = base.get("node")
        limit = None if callable(max_tokens) else max_tokens

        def size() -> int:
            nonlocal limit
            if callable(max_tokens):
                limit = max_tokens()
            return prompt_estimate + (limit or 0)

        async def request(limit_s: float) -> tuple[Any, Reply]:
            sent_at = time.monotonic()
            sized = kwargs if limit is None else {**kwargs, "max_completion_tokens": limit}
            raw = await self._client.chat.completions.with_raw_response.create(
                model=model,
                messages=msgs,  # type: ignore[arg-type]
                timeout=limit_s,
                **sized,
            )
            reply = reply_from(raw)
            self._stalls.observe(node, time.monotonic() - sent_at, reply.completion_tokens or 0)
            return raw.headers, reply

        def watch(scope: asyncio.Timeout) -> contextlib.AbstractContextManager[Watched]:
            # A first attempt may be given up early (see StallWatch); retries wait it all.
            return self._stalls.watching(node, limit, timeout_s, scope)

        completion = await self.run(
            request, size if callable(max_tokens) else size(), timeout_s, tally, base, watch
        )
        charged = _account_tokens(completion, prompt_estimate, limit, tally)
        self._rate.correct(prompt_estimate + (limit or 0), charged)
        return completion, limit

    async def run(
        self,
        request: Callable[[float], Awaitable[tuple[Mapping[str, str], T]]],
        rate_estimate: int | Callable[[], int],
        timeout_s: float,
        tally: Attempts,
        base: dict[str, Any] | None,
        first_attempt: Callable[[asyncio.Timeout], contextlib.AbstractContextManager[Watched]]
        | None = None,
    ) -> T:
        """One logical request: ``request(limit_s)`` (which sends it within ``limit_s`` and
        returns the response's headers and what the caller reads of it) under the rate budget
        (``rate_estimate`` tokens, or a function asked when the attempt is admitted: see
        :meth:`send`) and a concurrency slot, retried per the policy. Every attempt gets
        ``timeout_s``; the first runs inside ``first_attempt(scope)``, which may bring its
        deadline forward (a stalled answer is sent again: see ``StallWatch``). Each retry is
        announced as a
        :class:`CallRetry` of the call ``base`` describes (``None``: not a call with events).
        The caller corrects the token estimate (:meth:`correct`) once it knows the charge."""
        attempt = 0
        while True:
            attempt += 1
            ticket, estimate = await self._admit(rate_estimate)
            tally.count += 1
            self.http_requests += 1
            watched: Watched | None = None
            try:
                async with asyncio.timeout(timeout_s) as scope:
                    if attempt == 1 and first_attempt is not None:
                        with first_attempt(scope) as watched:
                            headers, value = await request(timeout_s)
                    else:
                        headers, value = await request(timeout_s)
            except (openai.OpenAIError, TimeoutError) as exc:
                self._limiter.release(ticket)
                failure = classify(exc)
                assert failure is not None
                if failure.reason == "timeout" and watched is not None and watched.shortened:
                    failure = replace(failure, reason="stalled")
                wait = self._on_failure(failure, ticket, attempt)
                if wait is None:
                    raise _translate(failure, attempt) from exc
            except BaseException:
                self._limiter.release(ticket)
                raise
            else:
                self._limiter.on_success(ticket)
                self._limiter.release(ticket)
                self._rate.observe(headers)
                self._follow_budget(estimate)
                return value
            if base is not None:
                self._emit(CallRetry(**base, attempt=attempt, reason=failure.reason, wait_s=wait))
            await asyncio.sleep(wait)

    def correct(self, estimate: int, charged: int) -> None:
        """The provider charged ``charged`` tokens for a request taken at ``estimate``."""
        self._rate.correct(estimate, charged)

    async def _admit(self, rate_estimate: int | Callable[[], int]) -> tuple[LimiterTicket, int]:
        """Take rate budget, then a concurrency slot; returns the slot's ticket and the
        attempt's token estimate. A call sized late is sized again once it has its slot (it
        may have waited for it), the budget corrected by the difference."""
        while True:
            permit = await self._rate.acquire(rate_estimate)
            try:
                if permit.requests or permit.tokens:
                    # Growing only as answers arrive would hold a first wave of long calls to
                    # what the last answer's hint allowed (counted in calls of *its* size),
                    # for a whole round trip, while the budget goes unused.
                    self._follow_budget(permit.tokens or 1, granted=1)
                ticket = await self._limiter.acquire()
            finally:
                self._rate.dispatched(permit)
            if not self._rate.stale(permit):
                if not callable(rate_estimate):
                    return ticket, rate_estimate
                now = rate_estimate()
                if permit.tokens:
                    self._rate.correct(permit.tokens, now)
                return ticket, now
            # Admitted before any limit was known; limits are known now: queue for budget.
            self._limiter.release(ticket)

    def _follow_budget(self, tokens: int, *, granted: int = 0) -> None:
        """In slow start, let the limit hold what the known rate budget allows: the calls in
        flight, ``granted`` more that already hold budget, and as many calls of ``tokens``
        tokens as it would admit right now (see :meth:`AdaptiveLimiter.hint`)."""
        available = self._rate.available(tokens)
        if available is not None:
            self._limiter.hint(self._limiter.in_flight + granted + available)

    def _on_failure(self, failure: Failure, ticket: LimiterTicket, attempt: int) -> float | None:
        """Feed a failed attempt to the limiter and budgets; seconds to wait, or None (final)."""
        if failure.headers:
            self._rate.observe(failure.headers)
        if failure.kind != "retry":
            return None
        if failure.overload and not (failure.reason == "rate_limit" and self._rate.paced):
            # A 429 while the budget knows the limits means its estimate and the provider's
            # count differ a little at the edge of the bucket: the pause below and the budget
            # pace that. Cutting the calls in flight too would starve a quota of long calls
            # (tokens per second = calls in flight x tokens per call / latency).
            self._limiter.on_overload(ticket, capacity=failure.capacity)
        if attempt > self._policy.max_retries:
            return None
        self.retries[failure.reason] += 1
        if failure.reason == "rate_limit" and failure.retry_after is not None:
            self._rate.pause(min(failure.retry_after, self._policy.max_retry_after_s))
        return self._policy.delay(attempt, failure, self._rng)


def _account_tokens(
    completion: Reply, prompt_estimate: int, max_tokens: int | None, tally: Attempts
) -> int:
    """Add the attempt's usage to the tally; return tokens the provider charged."""
    if completion.prompt_tokens is not None:
        prompt = completion.prompt_tokens
        output = completion.completion_tokens or 0
    else:
        prompt = prompt_estimate
        output = count_tokens(completion.text)
    tally.prompt += prompt
    tally.completion += output
    return prompt + (max_tokens if max_tokens else output)


def _translate(failure: Failure, attempts: int) -> ProposalsError:
    if failure.kind == "overflow":
        return ContextOverflowError(failure.message, status=failure.status, code=failure.code)
    if failure.kind == "fatal":
        return NonRetryableError(
            f"{failure.reason}: {failure.message}", status=failure.status, code=failure.code
        )
    return RetriesExhausted(
        f"gave up after {attempts} attempts; last error {failure.reason}: {failure.message}",
        attempts=attempts,
        cause=failure.reason,
    )
