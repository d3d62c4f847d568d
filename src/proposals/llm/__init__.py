"""The LLM gateway, packing and split-on-overflow.

Every LLM call of every run goes through one :class:`LLMGateway` per endpoint: it bounds
concurrency adaptively (AIMD), paces requests and tokens per minute, retries what can be
retried, caches answers in PostgreSQL, accounts usage and cost per run and node, and emits
per-call events. :func:`pack` groups items into calls under the context window and
:func:`call_splitting` splits a group the server still finds too long.

```python
gw = LLMGateway(GatewayConfig.from_settings(settings), cache=ResponseCache(database))
res = await gw.complete(messages, schema=Answer, tags=CallTags(run_id="r1", node="analyze"))
```
"""

from ._cache import LoggedCall, ResponseCache
from ._config import GatewayConfig
from ._embed import Embeddings
from ._errors import (
    ContextOverflowError,
    InvalidOutputError,
    NonRetryableError,
    ProviderUnreachable,
    RetriesExhausted,
)
from ._events import CallEvent, CallFailed, CallFinished, CallRetry, CallStarted
from ._gateway import GatewayStats, LLMGateway, LLMResult
from ._output import json_schema_format
from ._packing import Batch, pack
from ._shared import SharedBudget, ShareSettings, share_settings
from ._split import Outcome, call_splitting
from ._usage import (
    DEFAULT_PRICES,
    Budget,
    CallTags,
    ModelPrice,
    PriceTable,
    Usage,
    UsageTally,
    UsageTotals,
    load_prices,
)

__all__ = [
    "DEFAULT_PRICES",
    "Batch",
    "Budget",
    "CallEvent",
    "CallFailed",
    "CallFinished",
    "CallRetry",
    "CallStarted",
    "CallTags",
    "ContextOverflowError",
    "Embeddings",
    "GatewayConfig",
    "GatewayStats",
    "InvalidOutputError",
    "LLMGateway",
    "LLMResult",
    "LoggedCall",
    "ModelPrice",
    "NonRetryableError",
    "Outcome",
    "PriceTable",
    "ProviderUnreachable",
    "ResponseCache",
    "RetriesExhausted",
    "ShareSettings",
    "SharedBudget",
    "Usage",
    "UsageTally",
    "UsageTotals",
    "call_splitting",
    "json_schema_format",
    "load_prices",
    "pack",
    "share_settings",
]
