"""The LLM gateway and packing.

Every LLM call of every run goes through one :class:`LLMGateway` per endpoint: it bounds
concurrency adaptively (AIMD), paces requests and tokens per minute, retries what can be
retried, caches answers in PostgreSQL, accounts usage and cost per run and node, and emits
per-call events. :func:`pack` and :func:`map_packed` group items into calls under the context
window and split a batch the server still finds too long.

```python
gw = LLMGateway(GatewayConfig.from_settings(settings), cache=ResponseCache(database))
res = await gw.complete(messages, schema=Answer, tags=CallTags(run_id="r1", node="analyze"))
```
"""

from ._cache import CachedResponse, ResponseCache, request_key
from ._config import GatewayConfig
from ._errors import ContextOverflowError, InvalidOutputError, NonRetryableError, RetriesExhausted
from ._events import CallEvent, CallFailed, CallFinished, CallRetry, CallStarted
from ._gateway import (
    GatewayStats,
    LLMGateway,
    LLMResult,
    estimate_prompt_tokens,
    json_schema_format,
)
from ._limiter import AdaptiveLimiter, LimiterTicket
from ._packing import (
    Batch,
    ItemFailure,
    PackedResults,
    map_packed,
    pack,
    request_budget,
    truncate_text,
)
from ._ratelimit import RateBudget, parse_duration
from ._retry import Failure, RetryPolicy, classify, parse_retry_after
from ._usage import (
    DEFAULT_PRICES,
    FALLBACK_PRICE_MODEL,
    Budget,
    CallTags,
    ModelPrice,
    PriceTable,
    Usage,
    UsageLedger,
    UsageTotals,
)

__all__ = [
    "DEFAULT_PRICES",
    "FALLBACK_PRICE_MODEL",
    "AdaptiveLimiter",
    "Batch",
    "Budget",
    "CachedResponse",
    "CallEvent",
    "CallFailed",
    "CallFinished",
    "CallRetry",
    "CallStarted",
    "CallTags",
    "ContextOverflowError",
    "Failure",
    "GatewayConfig",
    "GatewayStats",
    "InvalidOutputError",
    "ItemFailure",
    "LLMGateway",
    "LLMResult",
    "LimiterTicket",
    "ModelPrice",
    "NonRetryableError",
    "PackedResults",
    "PriceTable",
    "RateBudget",
    "ResponseCache",
    "RetriesExhausted",
    "RetryPolicy",
    "Usage",
    "UsageLedger",
    "UsageTotals",
    "classify",
    "estimate_prompt_tokens",
    "json_schema_format",
    "map_packed",
    "pack",
    "parse_duration",
    "parse_retry_after",
    "request_budget",
    "request_key",
    "truncate_text",
]
