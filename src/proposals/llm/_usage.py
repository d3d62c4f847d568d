"""Usage, prices and budgets: what calls cost, and the limits checked before each one.

Prices are USD per one million tokens. A model missing from the table (including the
simulator's) is priced like ``gpt-4o-mini`` and flagged ``priced_as`` so reports say so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BudgetExceeded, ConfigError

__all__ = [
    "DEFAULT_PRICES",
    "FALLBACK_PRICE_MODEL",
    "Budget",
    "CallTags",
    "ModelPrice",
    "PriceTable",
    "Usage",
    "UsageLedger",
    "UsageTally",
    "UsageTotals",
    "load_prices",
]


class ModelPrice(BaseModel):
    """USD per one million input and output tokens of one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


FALLBACK_PRICE_MODEL = "gpt-4o-mini"
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input_per_1m=0.15, output_per_1m=0.60),
    "gpt-4o": ModelPrice(input_per_1m=2.50, output_per_1m=10.00),
    "gpt-4.1": ModelPrice(input_per_1m=2.00, output_per_1m=8.00),
    "gpt-4.1-mini": ModelPrice(input_per_1m=0.40, output_per_1m=1.60),
    "gpt-4.1-nano": ModelPrice(input_per_1m=0.10, output_per_1m=0.40),
    "gpt-4-turbo": ModelPrice(input_per_1m=10.00, output_per_1m=30.00),
    "gpt-3.5-turbo": ModelPrice(input_per_1m=0.50, output_per_1m=1.50),
    "o3-mini": ModelPrice(input_per_1m=1.10, output_per_1m=4.40),
    "o4-mini": ModelPrice(input_per_1m=1.10, output_per_1m=4.40),
    # Embedding models (input only), for embeddings sent through a gateway.
    "text-embedding-3-small": ModelPrice(input_per_1m=0.02, output_per_1m=0.0),
    "text-embedding-3-large": ModelPrice(input_per_1m=0.13, output_per_1m=0.0),
    "text-embedding-ada-002": ModelPrice(input_per_1m=0.10, output_per_1m=0.0),
}
"""Defaults; pass ``GatewayConfig(prices=...)`` to override or add models."""


def load_prices(
    source: Path | Mapping[str, Mapping[str, float]] | None,
) -> dict[str, ModelPrice]:
    """Price overrides from a JSON/YAML file or a mapping ``{model: {input_per_1m, output_per_1m}}``.

    Raises :class:`ConfigError` naming the file and model when an entry is malformed.
    """
    if source is None:
        return {}
    where = "prices"
    if isinstance(source, Path):
        where = str(source)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the price file {source}: {exc.strerror}") from exc
        try:
            import yaml  # JSON is YAML: one parser reads both

            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid JSON or YAML: {exc}") from exc
    else:
        data = source
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of model name to prices")
    out: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        try:
            out[str(model)] = ModelPrice.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            raise ConfigError(f"{where}: model {model!r}, {field}: {first['msg']}") from exc
    return out


class PriceTable:
    """Looks up a model's price; longest known prefix wins (``gpt-4o-2024-08-06`` → gpt-4o)."""

    def __init__(self, prices: dict[str, ModelPrice] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES)
        self._prices.update(prices or {})

    def lookup(self, model: str) -> tuple[ModelPrice, str | None]:
        """The price of ``model`` and, when it is unknown, the model it was priced as."""
        if model in self._prices:
            return self._prices[model], None
        for name in sorted(self._prices, key=len, reverse=True):
            if model.startswith(name + "-"):
                return self._prices[name], None
        fallback = self._prices.get(FALLBACK_PRICE_MODEL, DEFAULT_PRICES[FALLBACK_PRICE_MODEL])
        return fallback, FALLBACK_PRICE_MODEL

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price, _ = self.lookup(model)
        return (prompt_tokens * price.input_per_1m + completion_tokens * price.output_per_1m) / 1e6


class Usage(BaseModel):
    """Tokens and cost of one call (both attempts when a repair was needed)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    """Cost at the price table's rates (0 for a cache hit: no provider usage)."""
    cached: bool = False
    """Served from the response cache; the token counts are those of the original call."""
    estimated: bool = False
    """The provider reported no usage; counts come from the local token counter."""
    priced_as: str | None = None
    """Set when the model was unknown and priced like this one."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class CallTags:
    """Who made a call: accounting and event routing key."""

    run_id: str | None = None
    node: str | None = None


class UsageTotals(BaseModel):
    """Summed usage of many calls, as of one moment (a frozen snapshot of a
    :class:`UsageTally`). Runs report it in their events and results."""

    model_config = ConfigDict(frozen=True)

    calls: int = 0
    """Calls answered by the provider."""
    cached_calls: int = 0
    """Calls answered from the cache (no provider usage)."""
    failed_calls: int = 0
    """Calls that ended in an error."""
    retries: int = 0
    """Attempts retried after a retryable error."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached_tokens: int = 0
    """Tokens of the calls answered from the cache (what the cache saved; not in the counts
    above)."""
    wall_s: float = 0.0
    """Per node or model: seconds from its first call's start to its last call's end."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_FIELDS = tuple(UsageTotals.model_fields)


class UsageTally:
    """The one mutable usage counter: add calls as they end, read :meth:`snapshot`."""

    __slots__ = _FIELDS

    def __init__(self, start: UsageTotals | None = None) -> None:
        begin = start or UsageTotals()
        for name in _FIELDS:
            setattr(self, name, getattr(begin, name))

    def add(self, usage: Usage) -> None:
        """Count one answered call (a cache hit adds no tokens or cost, only cached tokens)."""
        if usage.cached:
            self.cached_calls += 1
            self.cached_tokens += usage.total_tokens
            return
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.cost_usd += usage.cost_usd

    def add_retry(self) -> None:
        self.retries += 1

    def add_failure(self) -> None:
        self.failed_calls += 1

    def merge(self, other: UsageTally) -> None:
        for name in _FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def snapshot(self) -> UsageTotals:
        return UsageTotals(**{name: getattr(self, name) for name in _FIELDS})

    # Declared for type checkers; the slots above hold them.
    calls: int
    cached_calls: int
    failed_calls: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached_tokens: int
    wall_s: float


class UsageLedger:
    """Provider usage summed per (run, node), in memory, plus the process-wide total.

    A run's entries live until :meth:`forget` (the gateway calls it when a run's last
    listener leaves), so a long-lived process does not grow with every run it served.
    """

    def __init__(self) -> None:
        self._by_tag: dict[CallTags, UsageTally] = defaultdict(UsageTally)
        self._all = UsageTally()

    def add(self, tags: CallTags, usage: Usage) -> None:
        self._by_tag[tags].add(usage)
        self._all.add(usage)

    def forget(self, run_id: str) -> None:
        """Drop the per-node entries of one run (the process-wide total keeps them)."""
        for tags in [t for t in self._by_tag if t.run_id == run_id]:
            del self._by_tag[tags]

    def totals(self, run_id: str | None = None, node: str | None = None) -> UsageTotals:
        """Sum over every tag matching ``run_id`` and ``node`` (``None`` matches all)."""
        if run_id is None and node is None:
            return self._all.snapshot()
        out = UsageTally()
        for tags, item in self._by_tag.items():
            if (run_id is None or tags.run_id == run_id) and (node is None or tags.node == node):
                out.merge(item)
        return out.snapshot()

    def by_node(self, run_id: str) -> dict[str, UsageTotals]:
        """Totals of one run per node (``""`` for calls without a node)."""
        out: dict[str, UsageTally] = {}
        for tags, item in self._by_tag.items():
            if tags.run_id == run_id:
                out.setdefault(tags.node or "", UsageTally()).merge(item)
        return {node: tally.snapshot() for node, tally in out.items()}


class Budget:
    """Token and cost limits for a set of calls (e.g. one run): checked before, updated after.

    Calls in flight hold a reservation of their estimate, so concurrent calls cannot together
    overshoot the limit by more than the estimates' error. Share one instance across the calls
    it should bound.
    """

    def __init__(self, max_tokens: int | None = None, max_cost: float | None = None) -> None:
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.used_tokens = 0
        self.used_cost = 0.0
        self._reserved_tokens = 0
        self._reserved_cost = 0.0

    def reserve(self, tokens: int, cost: float) -> None:
        """Check that a call of about ``tokens``/``cost`` fits, and hold that much.

        Raises :class:`proposals.errors.BudgetExceeded` when it does not.
        """
        if self.max_tokens is not None:
            planned = self.used_tokens + self._reserved_tokens + tokens
            if planned > self.max_tokens:
                raise BudgetExceeded(
                    f"token budget of {self.max_tokens} reached: {self.used_tokens} used, "
                    f"{self._reserved_tokens} in flight, next call needs about {tokens}"
                )
        if self.max_cost is not None:
            planned_cost = self.used_cost + self._reserved_cost + cost
            if planned_cost > self.max_cost:
                raise BudgetExceeded(
                    f"cost budget of ${self.max_cost:.4f} reached: ${self.used_cost:.4f} used, "
                    f"${self._reserved_cost:.4f} in flight, next call needs about ${cost:.4f}"
                )
        self._reserved_tokens += tokens
        self._reserved_cost += cost

    def settle(self, tokens: int, cost: float, usage: Usage | None) -> None:
        """Release a reservation and add the call's real usage (``None``: it failed)."""
        self._reserved_tokens -= tokens
        self._reserved_cost -= cost
        if usage is not None and not usage.cached:
            self.used_tokens += usage.total_tokens
            self.used_cost += usage.cost_usd

    @property
    def remaining_tokens(self) -> int | None:
        return None if self.max_tokens is None else self.max_tokens - self.used_tokens
