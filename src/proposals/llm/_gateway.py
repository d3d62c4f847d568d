"""The LLM gateway: one per endpoint per process, shared by every run.

It owns the HTTP client (a pool sized above the concurrency ceiling; SDK retries off), the
adaptive concurrency limit, the RPM/TPM budgets, the one retry loop, the response cache, the
usage accounting and the per-run call events. See ``docs/CONTRACTS.md``; every call of every
run goes through it, so one place sees the provider's capacity.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, overload

import httpx2
import openai
from pydantic import BaseModel, Field, ValidationError

from ..errors import ConfigError, DatabaseError, ProposalsError
from ..observe import chat_span, record_chat
from ..tokens import count_tokens, estimate_prompt_tokens
from ._cache import CachedResponse, ResponseCache, request_key
from ._config import GatewayConfig
from ._errors import (
    ContextOverflowError,
    InvalidOutputError,
    NonRetryableError,
    ProviderUnreachable,
    RetriesExhausted,
)
from ._events import CallEvent, CallFailed, CallFinished, CallRetry, CallStarted
from ._limiter import AdaptiveLimiter, LimiterTicket
from ._ratelimit import RateBudget
from ._retry import Failure, RetryPolicy, classify
from ._usage import Budget, CallTags, PriceTable, Usage, UsageLedger, UsageTotals

__all__ = [
    "GatewayStats",
    "LLMGateway",
    "LLMResult",
    "json_schema_format",
]

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
Listener = Callable[[CallEvent], None]


def json_schema_format(schema: type[BaseModel]) -> dict[str, Any]:
    """``response_format`` asking for strict JSON matching the pydantic model ``schema``."""
    try:
        from openai.lib import type_to_response_format_param
    except ImportError:  # pragma: no cover - older or newer SDK layouts
        return _build_strict_format(schema)
    return dict(type_to_response_format_param(schema))  # type: ignore[arg-type]


def _build_strict_format(schema: type[BaseModel]) -> dict[str, Any]:
    """Fallback: strict-mode JSON schema without the SDK's helper."""

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items() if k != "default"}
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema.__name__,
            "schema": strict(schema.model_json_schema()),
            "strict": True,
        },
    }


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


class _Attempts:
    """Mutable per-call tally shared by the send loop and ``complete``."""

    __slots__ = ("completion", "count", "prompt")

    def __init__(self) -> None:
        self.count = 0
        self.prompt = 0
        self.completion = 0


class LLMGateway:
    """One gateway per endpoint per process; every LLM call of every run goes through it.

    ``async with LLMGateway(config, cache=ResponseCache(db)) as gw: ...`` closes the HTTP
    client on exit. See :meth:`complete`.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        cache: ResponseCache | None = None,
        log_usage: bool = True,
        read_cache: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._cache = cache
        # False: every call goes to the provider (answers are still stored for later runs).
        self._read_cache = read_cache
        self._log_usage = log_usage and cache is not None
        self._rng = rng or random.Random()
        pool = config.concurrency_max + config.pool_margin
        timeout = httpx2.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))
        self._http = httpx2.AsyncClient(
            limits=httpx2.Limits(
                max_connections=pool,
                max_keepalive_connections=min(pool, config.pool_keepalive),
            ),
            timeout=timeout,
            follow_redirects=True,
        )
        self._client = self._make_client(config, self._http, timeout)
        self._limiter = AdaptiveLimiter(
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
        self._policy = RetryPolicy(
            max_retries=config.max_retries,
            base_s=config.backoff_base_s,
            max_s=config.backoff_max_s,
            max_retry_after_s=config.max_retry_after_s,
        )
        self._prices = PriceTable(config.prices)
        self._ledger = UsageLedger()
        self._listeners: dict[str | None, list[Listener]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._counts: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._call_retries: Counter[int] = Counter()
        """Retries of each call in flight (for its span)."""
        self._provider_name = (
            "azure.ai.openai"
            if config.is_azure
            else ("proposals.simulator" if config.simulated else "openai")
        )
        self._closed = False

    @staticmethod
    def _make_client(
        config: GatewayConfig, http: httpx2.AsyncClient, timeout: httpx2.Timeout
    ) -> openai.AsyncOpenAI:
        try:
            if config.is_azure:
                if not config.azure_api_key:
                    raise ConfigError(
                        "Azure OpenAI endpoint set but no key: set AZURE_OPENAI_API_KEY "
                        "(or PROPOSALS_AZURE_OPENAI_API_KEY)"
                    )
                return openai.AsyncAzureOpenAI(
                    azure_endpoint=config.azure_endpoint or "",
                    api_key=config.azure_api_key,
                    api_version=config.azure_api_version,
                    http_client=http,
                    max_retries=0,
                    timeout=timeout,
                )
            if not config.api_key and not config.base_url:
                raise ConfigError(
                    "no LLM provider configured: set OPENAI_API_KEY (or OPENAI_BASE_URL for an "
                    "OpenAI-compatible server, or AZURE_OPENAI_ENDPOINT), or use the simulator"
                )
            return openai.AsyncOpenAI(
                api_key=config.api_key or "no-key",
                base_url=config.base_url,
                http_client=http,
                max_retries=0,
                timeout=timeout,
            )
        except openai.OpenAIError as exc:
            raise ConfigError(f"cannot build the OpenAI client: {exc}") from exc

    # --- lifecycle --------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._client.close()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def check_connection(self, timeout_s: float = 10.0) -> None:
        """Raise :class:`ProviderUnreachable` ("cannot connect to URL: reason") when no
        connection can be opened to the endpoint. Any HTTP answer, even an error status,
        counts as reachable: this is about the address, not the key or the model."""
        url = str(self._client.base_url).rstrip("/") + "/models"
        try:
            response = await self._http.get(url, timeout=timeout_s)
            await response.aclose()
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            reason = _os_reason(exc) or str(exc) or type(exc).__name__
            where = str(self._client.base_url).rstrip("/")
            raise ProviderUnreachable(f"cannot connect to {where}: {reason}") from exc
        except httpx2.HTTPError:
            return

    # --- listeners --------------------------------------------------------------------------
    def subscribe(self, run_id: str | None, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` for every call event of run ``run_id`` (``None``: all runs).

        Callbacks run in the event loop and must be quick (e.g. put on a queue); an exception
        in one is logged and ignored. Returns a function that unsubscribes. When the last
        listener of a run leaves, the run is over for this gateway: its per-node usage entries
        are dropped (:meth:`usage` then reports nothing for it; :meth:`stats` keeps the total).
        """
        self._listeners[run_id].append(callback)

        def unsubscribe() -> None:
            listeners = self._listeners.get(run_id)
            if listeners and callback in listeners:
                listeners.remove(callback)
                if not listeners:
                    del self._listeners[run_id]
                    if run_id is not None:
                        self._ledger.forget(run_id)

        return unsubscribe

    def _emit(self, event: CallStarted | CallRetry | CallFinished | CallFailed) -> None:
        if isinstance(event, CallRetry):
            self._call_retries[event.call_id] += 1
        targets = list(self._listeners.get(event.run_id, ()))
        if event.run_id is not None:
            targets += self._listeners.get(None, ())
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("call event listener failed")

    # --- accounting -------------------------------------------------------------------------
    def stats(self) -> GatewayStats:
        """Counters, limits and totals of this gateway so far."""
        totals = self._ledger.totals()
        return GatewayStats(
            calls=self._counts["calls"],
            succeeded=self._counts["succeeded"],
            failed=self._counts["failed"],
            cached=self._counts["cached"],
            http_requests=self._counts["http_requests"],
            in_flight=self._limiter.in_flight,
            limit=self._limiter.limit,
            peak_in_flight=self._limiter.peak_in_flight,
            peak_in_flight_after_first_cut=self._limiter.peak_since_first_cut,
            limit_cuts=self._limiter.cuts,
            learned_ceiling=self._limiter.ceiling,
            retries_by_cause=dict(self._retries),
            failures_by_cause=dict(self._failures),
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            cost_usd=totals.cost_usd,
            rate_limits=self._rate.describe(),
            rate_wait_s=self._rate.waited_s,
            cache_errors=self._counts["cache_errors"],
            simulated=self.config.simulated,
        )

    def usage(self, run_id: str | None = None, node: str | None = None) -> UsageTotals:
        """Provider usage of the calls tagged ``run_id``/``node`` (``None`` matches all)."""
        return self._ledger.totals(run_id, node)

    def usage_by_node(self, run_id: str) -> dict[str, UsageTotals]:
        """Provider usage of one run, per node."""
        return self._ledger.by_node(run_id)

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

    # --- the call ---------------------------------------------------------------------------
    @overload
    async def complete(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        model: str | None = ...,
        schema: type[ModelT],
        max_tokens: int | None = ...,
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
        max_tokens: int | None = ...,
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
        max_tokens: int | None = None,
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
        (one repair round trip on invalid output). ``max_tokens`` caps the answer.
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
            self.config.fit_format(json_schema_format(schema)) if schema is not None else None
        )
        params: dict[str, Any] = {}
        if max_tokens is not None:
            params["max_completion_tokens"] = max_tokens
        if temperature is not None:
            params["temperature"] = temperature
        params.update(extra or {})
        key = request_key(model, msgs, response_format, params, endpoint=self.config.endpoint)
        call_id = next(self._ids)
        self._counts["calls"] += 1
        started = time.monotonic()
        base: dict[str, Any] = {
            "call_id": call_id,
            "run_id": tags.run_id,
            "node": tags.node,
            "model": model,
        }
        self._emit(CallStarted(**base))
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
                self._counts["failed"] += 1
                self._failures[_failure_cause(exc)] += 1
                record_chat(
                    span,
                    retries=self._call_retries.pop(call_id, 0),
                    error_type=type(exc).__name__,
                    messages=msgs if self.config.trace_content else None,
                )
                self._emit(
                    CallFailed(
                        **base, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__
                    )
                )
                raise
            record_chat(
                span,
                response_model=result.model,
                input_tokens=result.usage.prompt_tokens,
                output_tokens=result.usage.completion_tokens,
                finish_reasons=[result.finish_reason or ""],
                retries=self._call_retries.pop(call_id, 0),
                cache_hit=result.cached,
                cost_usd=result.usage.cost_usd,
                messages=msgs if self.config.trace_content else None,
                completion=result.text if self.config.trace_content else None,
            )
        self._counts["succeeded"] += 1
        if result.cached:
            self._counts["cached"] += 1
        self._emit(
            CallFinished(
                **base,
                usage=result.usage,
                cached=result.cached,
                attempts=result.attempts,
                duration_s=time.monotonic() - started,
            )
        )
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
        tags: CallTags,
        budget: Budget | None,
        timeout_s: float,
        use_cache: bool,
        base: dict[str, Any],
    ) -> LLMResult[Any]:
        if use_cache and self._read_cache and self._cache is not None:
            hit = await self._cache_get(key)
            if hit is not None:
                cached_parsed = _try_parse(schema, hit.text)
                if schema is None or cached_parsed is not None:
                    cached_usage = Usage(
                        prompt_tokens=hit.prompt_tokens,
                        completion_tokens=hit.completion_tokens,
                        cached=True,
                    )
                    self._ledger.add(tags, cached_usage)
                    await self._record_usage(key, model, tags, cached_usage)
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
                    )

        prompt_estimate = estimate_prompt_tokens(msgs)
        reserve_tokens = prompt_estimate + (max_tokens or 0)
        reserve_cost = self._prices.cost(model, prompt_estimate, max_tokens or 0)
        if budget is not None:
            budget.reserve(reserve_tokens, reserve_cost)
        tally = _Attempts()
        usage: Usage | None = None

        async def send(messages: list[dict[str, Any]], estimate: int) -> Any:
            return await self._send(
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

        try:
            completion = await send(msgs, prompt_estimate)
            text, finish = _answer(completion)
            parsed: BaseModel | None = None
            if schema is not None:
                try:
                    parsed = schema.model_validate_json(text)
                except ValidationError as exc:
                    repair = [
                        *msgs,
                        {"role": "assistant", "content": text},
                        {
                            "role": "user",
                            "content": "That answer does not match the required JSON schema: "
                            f"{_short(exc)}. Reply again with only a JSON object that matches "
                            "the schema exactly.",
                        },
                    ]
                    # The prompt was counted once; only the two added messages are new.
                    added = estimate_prompt_tokens(repair[-2:], reply=False)
                    completion = await send(repair, prompt_estimate + added)
                    text, finish = _answer(completion)
                    try:
                        parsed = schema.model_validate_json(text)
                    except ValidationError as again:
                        raise InvalidOutputError(
                            f"answer does not match {schema.__name__} after one repair: "
                            f"{_short(again)}",
                            text=text,
                        ) from again
            usage = self._usage(
                model, tally.prompt, tally.completion, estimated=completion.usage is None
            )
        finally:
            if usage is None and tally.count:
                usage = self._usage(model, tally.prompt, tally.completion, estimated=False)
            if budget is not None:
                budget.settle(reserve_tokens, reserve_cost, usage)
            if usage is not None and usage.total_tokens:
                self._ledger.add(tags, usage)
                await self._record_usage(key, model, tags, usage)
        assert usage is not None
        if use_cache and self._cache is not None:
            await self._cache_put(
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
        )

    async def _send(
        self,
        model: str,
        msgs: list[dict[str, Any]],
        prompt_estimate: int,
        response_format: dict[str, Any] | None,
        params: dict[str, Any],
        max_tokens: int | None,
        timeout_s: float,
        tally: _Attempts,
        base: dict[str, Any],
    ) -> Any:
        """One logical request: the retry loop around HTTP attempts. Returns a ChatCompletion.
        ``prompt_estimate`` is the caller's count of ``msgs`` (a prompt is tokenized once)."""
        rate_estimate = prompt_estimate + (max_tokens or 0)
        kwargs: dict[str, Any] = dict(params)
        if response_format is not None:
            kwargs["response_format"] = response_format
        attempt = 0
        while True:
            attempt += 1
            ticket = await self._admit(rate_estimate)
            tally.count += 1
            self._counts["http_requests"] += 1
            try:
                async with asyncio.timeout(timeout_s):
                    raw = await self._client.chat.completions.with_raw_response.create(
                        model=model,
                        messages=msgs,  # type: ignore[arg-type]
                        timeout=timeout_s,
                        **kwargs,
                    )
                completion = raw.parse()
            except (openai.OpenAIError, TimeoutError) as exc:
                self._limiter.release()
                failure = classify(exc)
                assert failure is not None
                wait = self._on_failure(failure, ticket, attempt)
                if wait is None:
                    raise self._translate(failure, attempt) from exc
            except BaseException:
                self._limiter.release()
                raise
            else:
                self._limiter.on_success(ticket)
                self._limiter.release()
                self._rate.observe(raw.headers)
                available = self._rate.available(rate_estimate)
                if available is not None:
                    self._limiter.hint(self._limiter.in_flight + available)
                charged = self._account_tokens(completion, prompt_estimate, max_tokens, tally)
                self._rate.correct(rate_estimate, charged)
                return completion
            self._emit(CallRetry(**base, attempt=attempt, reason=failure.reason, wait_s=wait))
            await asyncio.sleep(wait)

    async def _admit(self, rate_estimate: int) -> LimiterTicket:
        """Take rate budget, then a concurrency slot; returns the slot's ticket."""
        while True:
            permit = await self._rate.acquire(rate_estimate)
            try:
                ticket = await self._limiter.acquire()
            finally:
                self._rate.dispatched(permit)
            if not self._rate.stale(permit):
                return ticket
            # Admitted before any limit was known; limits are known now: queue for budget.
            self._limiter.release()

    def _account_tokens(
        self, completion: Any, prompt_estimate: int, max_tokens: int | None, tally: _Attempts
    ) -> int:
        """Add the attempt's usage to the tally; return tokens the provider charged."""
        if completion.usage is not None:
            prompt = int(completion.usage.prompt_tokens or 0)
            output = int(completion.usage.completion_tokens or 0)
        else:
            prompt = prompt_estimate
            output = count_tokens(_answer(completion)[0])
        tally.prompt += prompt
        tally.completion += output
        return prompt + (max_tokens if max_tokens else output)

    def _on_failure(self, failure: Failure, ticket: LimiterTicket, attempt: int) -> float | None:
        """Feed a failed attempt to the limiter and budgets; seconds to wait, or None (final)."""
        if failure.headers:
            self._rate.observe(failure.headers)
        if failure.kind != "retry":
            return None
        if failure.overload:
            self._limiter.on_overload(ticket, capacity=failure.capacity)
        if attempt > self._policy.max_retries:
            return None
        self._retries[failure.reason] += 1
        if failure.reason == "rate_limit" and failure.retry_after is not None:
            self._rate.pause(min(failure.retry_after, self._policy.max_retry_after_s))
        return self._policy.delay(attempt, failure, self._rng)

    def _translate(self, failure: Failure, attempts: int) -> ProposalsError:
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

    # --- cache I/O (a broken cache never fails a call) --------------------------------------
    async def _cache_get(self, key: str) -> CachedResponse | None:
        assert self._cache is not None
        try:
            return await self._cache.get(key)
        except DatabaseError as exc:
            self._counts["cache_errors"] += 1
            log.warning("%s; calling the provider", exc)
            return None

    async def _cache_put(self, key: str, response: CachedResponse) -> None:
        assert self._cache is not None
        try:
            await self._cache.put(key, response)
        except DatabaseError as exc:
            self._counts["cache_errors"] += 1
            log.warning("%s; answer not cached", exc)

    async def _record_usage(self, key: str, model: str, tags: CallTags, usage: Usage) -> None:
        if not self._log_usage or self._cache is None:
            return
        try:
            await self._cache.record_usage(key, model, tags, usage)
        except DatabaseError as exc:
            self._counts["cache_errors"] += 1
            log.warning("%s", exc)


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's words for a failed connection ("Connection refused"), found
    down the exception's causes, lower-cased; None when there is none."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and (seen.errno or seen.strerror):
            code = seen.errno if isinstance(seen.errno, int) else 0
            # errno < 0 are resolver codes (socket.gaierror): their strerror says it.
            return (os.strerror(code) if code > 0 else str(seen.strerror)).lower()
        for inner in getattr(seen, "exceptions", ()):  # an ExceptionGroup of attempts
            found = _os_reason(inner)
            if found:
                return found
        seen = seen.__cause__ or seen.__context__
    return None


def _failure_cause(exc: BaseException) -> str:
    if isinstance(exc, RetriesExhausted):
        return f"retries_exhausted_{exc.cause}"
    if isinstance(exc, ContextOverflowError):
        return "context_overflow"
    if isinstance(exc, NonRetryableError):
        return f"non_retryable_{exc.status or exc.code or 'error'}"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__


def _answer(completion: Any) -> tuple[str, str | None]:
    if not completion.choices:
        return "", None
    choice = completion.choices[0]
    return choice.message.content or "", choice.finish_reason


def _try_parse(schema: type[BaseModel] | None, text: str) -> BaseModel | None:
    if schema is None:
        return None
    try:
        return schema.model_validate_json(text)
    except ValidationError:
        return None


def _short(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "(root)"
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)
