"""Errors of the LLM gateway, all under :class:`proposals.errors.ProviderError`.

```
ProviderError
├── NonRetryableError        the provider refused the request (400, 401, 403, 404, 422,
│   │                        insufficient_quota); retrying cannot help
│   └── ContextOverflowError the request is longer than the model's context window;
│                            the caller should split its input (see ``call_splitting``)
├── RetriesExhausted         retryable failures (429, 5xx, connection, timeout) went on
│                            after the configured number of retries
├── InvalidOutputError       a structured answer did not match its schema, even after
│                            one repair attempt
└── ProviderUnreachable      nothing answers at the endpoint's address (refused, unknown
                             host, no route): checked before a run spends anything
```
"""

from __future__ import annotations

from ..errors import ProviderError

__all__ = [
    "ContextOverflowError",
    "InvalidOutputError",
    "NonRetryableError",
    "ProviderUnreachable",
    "RetriesExhausted",
]


class NonRetryableError(ProviderError):
    """The provider rejected the request in a way a retry cannot fix.

    ``status`` is the HTTP status (``None`` when the failure had no response) and ``code`` the
    provider's error code (e.g. ``insufficient_quota``) when it gave one.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ContextOverflowError(NonRetryableError):
    """The request does not fit the model's context window; split or shorten the input."""


class RetriesExhausted(ProviderError):
    """A call kept failing with retryable errors; ``attempts`` were made, ``cause`` is the last."""

    def __init__(self, message: str, *, attempts: int, cause: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.cause = cause


class InvalidOutputError(ProviderError):
    """The model's answer could not be parsed into the requested schema (after one repair)."""

    def __init__(self, message: str, *, text: str) -> None:
        super().__init__(message)
        self.text = text


class ProviderUnreachable(ProviderError):
    """No connection could be opened to the endpoint (its message names the URL)."""
