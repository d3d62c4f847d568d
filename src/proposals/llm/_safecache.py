"""The gateway's side of the response cache: a broken cache never fails a call.

Reads, writes and usage records go to :class:`ResponseCache`; a database error is logged,
counted and treated as a miss (or a write not made).
"""

from __future__ import annotations

import logging

from ..errors import DatabaseError
from ._cache import CachedResponse, ResponseCache
from ._usage import CallTags, Usage

__all__ = ["SafeCache"]

log = logging.getLogger(__name__)


class SafeCache:
    """``cache`` (or none) with errors absorbed; ``read=False`` skips lookups (answers are
    still stored), ``log_usage`` records each call's usage next to its answer."""

    def __init__(self, cache: ResponseCache | None, *, read: bool, log_usage: bool) -> None:
        self._cache = cache
        self._read = read
        self._log_usage = log_usage and cache is not None
        self.errors = 0
        """Database errors absorbed so far."""

    @property
    def stores(self) -> bool:
        return self._cache is not None

    @property
    def reads(self) -> bool:
        return self._read and self._cache is not None

    async def get(self, key: str) -> CachedResponse | None:
        assert self._cache is not None
        try:
            return await self._cache.get(key)
        except DatabaseError as exc:
            self.errors += 1
            log.warning("%s; calling the provider", exc)
            return None

    async def put(self, key: str, response: CachedResponse) -> None:
        assert self._cache is not None
        try:
            await self._cache.put(key, response)
        except DatabaseError as exc:
            self.errors += 1
            log.warning("%s; answer not cached", exc)

    async def record_usage(self, key: str, model: str, tags: CallTags, usage: Usage) -> None:
        if not self._log_usage or self._cache is None:
            return
        try:
            await self._cache.record_usage(key, model, tags, usage)
        except DatabaseError as exc:
            self.errors += 1
            log.warning("%s", exc)
