"""The LLM gateway: one per endpoint per process, shared by every run.

It owns the HTTP client (a pool sized above the concurrency ceiling; SDK retries off), the
adaptive concurrency limit, the RPM/TPM budgets, the one retry loop, the response cache, the
usage accounting and the per-run call events. See ``docs/CONTRACTS.md``; every call of every
run goes through it, so one place sees the provider's capacity. The parts live beside it:
clients in ``_client``, the attempt loop in ``_attempts``, events/spans/usage in
``_recorder``, cache I/O in ``_safecache``, response formats and parsing in ``_output``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, overload

import httpx2
from pydantic import BaseModel, Field, ValidationError

from ..errors import ProposalsError
from ..observe import chat_span
from ..tokens import estimate_prompt_tokens
from ._attempts import AttemptLoop, Attempts
from ._cache import CachedResponse, ResponseCache, request_key
from ._client import build_clients, check_connection
from ._config import GatewayConfig
from ._embed import Embeddings, send_embeddings
from ._errors import InvalidOutputError, RetriesExhausted
from ._limiter import AdaptiveLimiter
from ._output import Reply, json_schema_format, repair_messages, short_errors, try_parse
from ._ratelimit import RateBudget
from ._recorder import CallRecorder, Listener
from ._retry import RetryPolicy
from ._safecache import SafeCache
from ._shared import SharedBudget, SharedLimiter
from ._stall import StallWatch
from ._usage import Budget, CallTags, PriceTable, Usage, UsageTotals

__all__ = [
    "GatewayStats",
    "LLMGateway",
    "LLMResult",
    "json_schema_format",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class LLMResult(Generic[ModelT]):
    """The answer to one :meth:`LLMGateway.complete` call."""

    text: str
    """The assistant message's content (the JSON text when a schema was given)."""
    parsed: ModelT | None
    """The answer parsed into the schema, or ``None`` when no schema was given."""
    usage: Usage
    cached: bool
    """Served from the response cache: no HTTP call, no provider usage."""
    model: str
    finish_reason: str | None
    attempts: int
    """HTTP attempts made, repairs included (0 for a cache hit)."""
    request_hash: str
    call_id: int
    answer_tokens: int | None = None
    """Completion tokens of the answer returned alone (``usage`` also counts an answer cut
    short and asked again, and a repaired one); ``None`` when the provider reported none."""


class GatewayStats(BaseModel):
    """A snapshot of one gateway's counters."""

    calls: int = 0
    """``complete`` calls accepted."""
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    """Calls answered from the cache."""
    http_requests: int = 0
    """HTTP attempts sent (retries and repairs included)."""
    in_flight: int = 0
    limit: int = 0
    """Current adaptive concurrency limit."""
    peak_in_flight: int = 0
    peak_in_flight_after_first_cut: int = 0
    limit_cuts: int = 0
    learned_ceiling: int | None = None
    retries_by_cause: dict[str, int] = Field(default_factory=dict)
    failures_by_cause: dict[str, int] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    rate_limits: dict[str, float | None] = Field(default_factory=dict)
    """Limits in force: per minute, refill per second and capacity, requests and tokens."""
    rate_wait_s: float = 0.0
    """Seconds calls spent waiting for RPM/TPM budget (summed over calls)."""
    cache_errors: int = 0
    simulated: bool = False
    shared_budget: dict[str, Any] | None = None
    """This process's share of the endpoint's budget, when shared with other processes."""


class LLMGateway:
    """One gateway per endpoint per process; every LLM call of every run goes through it.

    ``async with LLMGateway(config, cache=ResponseCache(db)) as gw: ...`` closes the HTTP
    client on exit. See :meth:`complete`. ``transport`` replaces the network (a plan replays
    a run on the simulator's in-process transport).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        cache: ResponseCache | None = None,
        log_usage: bool = True,
        read_cache: bool = True,
        rng: random.Random | None = None,
        shared: SharedBudget | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        if shared is not None:
            # No idle connections kept: a process's connections are then exactly its calls in
            # flight, which its share bounds (an idle pool would hold connections another
            # process's share needs, and the provider would refuse that process's).
            config = config.model_copy(update={"pool_keepalive": 0})
        self.config = config
        # read_cache False: every call goes to the provider (answers are still stored).
        self._cache = SafeCache(cache, read=read_cache, log_usage=log_usage)
        self._http, self._client = build_clients(config, transport)
        self._limiter: AdaptiveLimiter | SharedLimiter = AdaptiveLimiter(
            minimum=config.concurrency_min,
            maximum=config.concurrency_max,
            start=config.start_limit,
            decrease_factor=config.decrease_factor,
            cooldown_s=config.decrease_cooldown_s,
            ceiling_margin=config.ceiling_margin,
        )
        self._rate = RateBudget(
            rpm=config.rpm,
            tpm=config.tpm,
            learn=config.learn_rate_limits,
            window_s=config.rate_window_s,
            burst_s=config.rate_burst_s,
        )
        # One budget with every other process calling this endpoint (docs/scale.md): its
        # limiter replaces the local one, and the rate budget paces at this process's share.
        self._shared = shared
        if shared is not None:
            shared.rate = self._rate
            self._limiter = shared.limiter
        self._policy = RetryPolicy(
            max_retries=config.max_retries,
            base_s=config.backoff_base_s,
            max_s=config.backoff_max_s,
            max_retry_after_s=config.max_retry_after_s,
        )
        self._prices = PriceTable(config.prices)
        self._recorder = CallRecorder(trace_content=config.trace_content)
        self._attempts = AttemptLoop(
            self._client,
            self._limiter,
            self._rate,
            self._policy,
            rng or random.Random(),
            self._recorder.emit,
            StallWatch(config.stall_factor),
        )
        self._ids = itertools.count(1)
        self._provider_name = (
            "azure.ai.openai"
            if config.is_azure
            else ("proposals.simulator" if config.simulated else "openai")
        )
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._shared is not None:
            await self._shared.aclose()  # the lease is deleted: the share is free at once
        await self._client.close()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        if self._shared is not None:
            await self._shared.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def check_connection(self, timeout_s: float = 10.0) -> None:
        """Raise :class:`ProviderUnreachable` ("cannot connect to URL: reason") when no
        connection can be opened to the endpoint. Any HTTP answer, even an error status,
        counts as reachable: this is about the address, not the key or the model."""
        await check_connection(self._http, self._client, timeout_s)

    # --- listeners --------------------------------------------------------------------------
    def subscribe(self, run_id: str | None, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` for every call event of run ``run_id`` (``None``: all runs).

        Callbacks run in the event loop and must be quick (e.g. put on a queue); an exception
        in one is logged and ignored. Returns a function that unsubscribes. When the last
        listener of a run leaves, the run is over for this gateway: its per-node usage entries
        are dropped (:meth:`usage` then reports nothing for it; :meth:`stats` keeps the total).
        """
        return self._recorder.subscribe(run_id, callback)

    # --- accounting -------------------------------------------------------------------------
    def stats(self) -> GatewayStats:
        """Counters, limits and totals of this gateway so far."""
        totals = self._recorder.ledger.totals()
        counts = self._recorder.counts
        return GatewayStats(
            calls=counts["calls"],
            succeeded=counts["succeeded"],
            failed=counts["failed"],
            cached=counts["cached"],
            http_requests=self._attempts.http_requests,
            in_flight=self._limiter.in_flight,
            limit=self._limiter.limit,
            peak_in_flight=self._limiter.peak_in_flight,
            peak_in_flight_after_first_cut=self._limiter.peak_since_first_cut,
            limit_cuts=self._limiter.cuts,
            learned_ceiling=self._limiter.ceiling,
            retries_by_cause=dict(self._attempts.retries),
            failures_by_cause=dict(self._recorder.failures),
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            cost_usd=totals.cost_usd,
            rate_limits=self._rate.describe(),
            rate_wait_s=self._rate.waited_s,
            shared_budget=self._shared.describe() if self._shared is not None else None,
            cache_errors=self._cache.errors,
            simulated=self.config.simulated,
        )

    def usage(self, run_id: str | None = None, node: str | None = None) -> UsageTotals:
        """Provider usage of the calls tagged ``run_id``/``node`` (``None`` matches all)."""
        return self._recorder.ledger.totals(run_id, node)

    def usage_by_node(self, run_id: str) -> dict[str, UsageTotals]:
        """Provider usage of one run, per node."""
        return self._recorder.ledger.by_node(run_id)

    def _usage(self, model: str, prompt: int, completion: int, *, estimated: bool) -> Usage:
        price, priced_as = self._prices.lookup(model)
        cost = (prompt * price.input_per_1m + completion * price.output_per_1m) / 1e6
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            estimated=estimated,
            priced_as=priced_as,
        )

    # --- embeddings -------------------------------------------------------------------------
    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str,
        dimensions: int | None = None,
        tags: CallTags | None = None,
        timeout_s: float | None = None,
    ) -> Embeddings:
        """Embed ``texts`` in one ``POST /embeddings`` request under this gateway's budgets.

        The request takes a concurrency slot and its tokens from the RPM/TPM budgets (this
        process's share of them with a shared budget), is retried like a chat call and
        teaches the limits the same way; its usage is accounted under ``tags``. Raises the
        gateway's errors (:class:`RetriesExhausted`, :class:`NonRetryableError`).
        """
        if self._closed:
            raise ProposalsError("the LLM gateway is closed")
        tags = tags or CallTags()
        deadline = self.config.deadline_s
        try:
            async with asyncio.timeout(deadline):
                result = await send_embeddings(
                    self._attempts,
                    self._client,
                    texts,
                    model=model,
                    dimensions=dimensions,
                    timeout_s=timeout_s or self.config.timeout_s,
                )
        except TimeoutError as exc:
            raise RetriesExhausted(
                f"no embeddings within the call's deadline of {deadline:g} s",
                attempts=0,
                cause="deadline",
            ) from exc
        self._recorder.add_usage(tags, self._usage(model, result.prompt_tokens, 0, estimated=False))
        return result

    # --- the call ---------------------------------------------------------------------------
    @overload
    async def complete(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = ...,
        schema: type[ModelT],
        schema_format: Mapping[str, Any] | None = ...,
        max_tokens: int | None = ...,
        expected_tokens: int | Callable[[], int] | None = ...,
        temperature: float | None = ...,
        tags: CallTags | None = ...,
        budget: Budget | None = ...,
        timeout_s: float | None = ...,
        use_cache: bool = ...,
        extra: Mapping[str, Any] | None = ...,
    ) -> LLMResult[ModelT]: ...

    @overload
    async def complete(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = ...,
        schema: None = ...,
        schema_format: None = ...,
        max_tokens: int | None = ...,
        expected_tokens: int | Callable[[], int] | None = ...,
        temperature: float | None = ...,
        tags: CallTags | None = ...,
        budget: Budget | None = ...,
        timeout_s: float | None = ...,
        use_cache: bool = ...,
        extra: Mapping[str, Any] | None = ...,
    ) -> LLMResult[Any]: ...

    async def complete(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        schema: type[BaseModel] | None = None,
        schema_format: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        expected_tokens: int | Callable[[], int] | None = None,
        temperature: float | None = None,
        tags: CallTags | None = None,
        budget: Budget | None = None,
        timeout_s: float | None = None,
        use_cache: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> LLMResult[Any]:
        """Ask the model; retry what can be retried; return the answer with its usage.

        ``messages`` are chat messages (``{"role", "content"}``) or one user prompt string.
        ``schema`` asks for strict JSON matching that pydantic model and parses the answer
        (one repair round trip on invalid output); ``schema_format`` is the
        ``response_format`` to send instead of the one built from ``schema``, for callers that
        state bounds the model does not validate (e.g. an enum of the citation ids shown),
        without building a model per call. ``max_tokens`` caps the answer.
        ``expected_tokens`` is how long the answer usually is: the request asks for at most
        that much (providers charge their tokens-per-minute quota on ``max_tokens``, not on
        what is produced), and an answer cut off by it is asked again, once, with the whole
        ``max_tokens``. The cache key is the same either way. It may be a function, asked when
        the call is admitted (out of the rate budget's queue, and again once it has a
        concurrency slot): a call that waited is sized with what its caller knows by then.
        ``tags`` attribute usage and events to a run and node; ``budget`` is checked before
        the call and charged after. ``extra`` adds request parameters (``seed``, ``top_p``…).

        Raises :class:`ContextOverflowError` (split the input), :class:`NonRetryableError`,
        :class:`RetriesExhausted`, :class:`InvalidOutputError`,
        :class:`~proposals.errors.BudgetExceeded`.
        """
        if self._closed:
            raise ProposalsError("the LLM gateway is closed")
        model = model or self.config.model
        tags = tags or CallTags()
        msgs = (
            [{"role": "user", "content": messages}]
            if isinstance(messages, str)
            else [dict(m) for m in messages]
        )
        response_format = (
            self.config.fit_format(dict(schema_format or json_schema_format(schema)))
            if schema is not None
            else None
        )
        params: dict[str, Any] = {}
        if max_tokens is not None:
            params["max_completion_tokens"] = max_tokens
        if temperature is not None:
            params["temperature"] = temperature
        params.update(extra or {})
        key = request_key(model, msgs, response_format, params, endpoint=self.config.endpoint)
        call_id = next(self._ids)
        started = time.monotonic()
        base: dict[str, Any] = {
            "call_id": call_id,
            "run_id": tags.run_id,
            "node": tags.node,
            "model": model,
        }
        self._recorder.started(base)
        deadline = self.config.deadline_s
        with chat_span(model, self._provider_name, run_id=tags.run_id, node=tags.node) as span:
            try:
                try:
                    async with asyncio.timeout(deadline):
                        result = await self._complete(
                            key,
                            call_id,
                            model,
                            msgs,
                            schema,
                            response_format,
                            params,
                            max_tokens,
                            expected_tokens,
                            tags,
                            budget,
                            timeout_s or self.config.timeout_s,
                            use_cache,
                            base,
                        )
                except TimeoutError as exc:
                    raise RetriesExhausted(
                        f"no answer within the call's deadline of {deadline:g} s "
                        "(waiting for capacity, attempts and backoff together)",
                        attempts=0,
                        cause="deadline",
                    ) from exc
            except BaseException as exc:
                self._recorder.failed(span, base, exc, msgs)
                raise
            self._recorder.traced(span, call_id, result, msgs)
        self._recorder.finished(base, result, started)
        return result

    async def _complete(
        self,
        key: str,
        call_id: int,
        model: str,
        msgs: list[dict[str, Any]],
        schema: type[BaseModel] | None,
        response_format: dict[str, Any] | None,
        params: dict[str, Any],
        max_tokens: int | None,
        expected_tokens: int | Callable[[], int] | None,
        tags: CallTags,
        budget: Budget | None,
        timeout_s: float,
        use_cache: bool,
        base: dict[str, Any],
    ) -> LLMResult[Any]:
        if use_cache and self._cache.reads:
            hit = await self._cache.get(key)
            if hit is not None:
                cached_parsed = try_parse(schema, hit.text)
                if schema is None or cached_parsed is not None:
                    cached_usage = Usage(
                        prompt_tokens=hit.prompt_tokens,
                        completion_tokens=hit.completion_tokens,
                        cached=True,
                    )
                    self._recorder.add_usage(tags, cached_usage)
                    await self._cache.record_usage(key, model, tags, cached_usage)
                    return LLMResult(
                        hit.text,
                        cached_parsed,
                        cached_usage,
                        True,
                        hit.model,
                        hit.finish_reason,
                        0,
                        key,
                        call_id,
                        hit.completion_tokens,
                    )

        prompt_estimate = estimate_prompt_tokens(msgs)
        reserve_tokens = prompt_estimate + (max_tokens or 0)
        reserve_cost = self._prices.cost(model, prompt_estimate, max_tokens or 0)
        if budget is not None:
            budget.reserve(reserve_tokens, reserve_cost)
        tally = Attempts()
        usage: Usage | None = None

        def first() -> int | None:
            if max_tokens is None or expected_tokens is None:
                return max_tokens
            want = expected_tokens() if callable(expected_tokens) else expected_tokens
            return max(1, min(max_tokens, want))

        async def send(messages: list[dict[str, Any]], estimate: int) -> Reply:
            completion, limit = await self._attempts.send(
                model,
                messages,
                estimate,
                response_format,
                params,
                first if callable(expected_tokens) else first(),
                timeout_s,
                tally,
                base,
            )
            if limit != max_tokens and completion.finish_reason == "length":
                # Cut off by the expected length: this one answer needs the whole cap.
                self._attempts.retries["output_length"] += 1
                completion, _ = await self._attempts.send(
                    model,
                    messages,
                    estimate,
                    response_format,
                    params,
                    max_tokens,
                    timeout_s,
                    tally,
                    base,
                )
            return completion

        try:
            completion = await send(msgs, prompt_estimate)
            text, finish = completion.text, completion.finish_reason
            parsed: BaseModel | None = None
            if schema is not None:
                try:
                    parsed = schema.model_validate_json(text)
                except ValidationError as exc:
                    repair = repair_messages(msgs, text, exc)
                    # The prompt was counted once; only the two added messages are new.
                    added = estimate_prompt_tokens(repair[-2:], reply=False)
                    completion = await send(repair, prompt_estimate + added)
                    text, finish = completion.text, completion.finish_reason
                    try:
                        parsed = schema.model_validate_json(text)
                    except ValidationError as again:
                        raise InvalidOutputError(
                            f"answer does not match {schema.__name__} after one repair: "
                            f"{short_errors(again)}",
                            text=text,
                        ) from again
            usage = self._usage(
                model, tally.prompt, tally.completion, estimated=completion.prompt_tokens is None
            )
        finally:
            if usage is None and tally.count:
                usage = self._usage(model, tally.prompt, tally.completion, estimated=False)
            if budget is not None:
                budget.settle(reserve_tokens, reserve_cost, usage)
            if usage is not None and usage.total_tokens:
                self._recorder.add_usage(tags, usage)
                await self._cache.record_usage(key, model, tags, usage)
        assert usage is not None
        if use_cache and self._cache.stores:
            await self._cache.put(
                key,
                CachedResponse(
                    text,
                    completion.model or model,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    finish,
                ),
            )
        return LLMResult(
            text,
            parsed,
            usage,
            False,
            completion.model or model,
            finish,
            tally.count,
            key,
            int(base["call_id"]),
            completion.completion_tokens,
        )
