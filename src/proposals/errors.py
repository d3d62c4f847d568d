"""The one exception root of the project.

```
ProposalsError
├── UserError                  a mistake the user can fix (bad config, bad input)
│   ├── ConfigError            settings missing or inconsistent
│   ├── InputError             a bad request, file, option or argument
│   │   └── NotFound           no such id (or it belongs to another tenant)
│   └── EmbeddingModelMismatch the index holds vectors of another model
└── RuntimeFailure             the system could not finish work it was given
    ├── DatabaseError          PostgreSQL unreachable, lacks pgvector, migration failed
    ├── IngestError            one file could not be ingested (reported, others go on)
    ├── ProviderError          the LLM / embedding endpoint failed (see proposals.llm)
    └── BudgetExceeded         a token or cost budget was reached
```

Third-party exceptions are translated at the boundary with ``raise ... from exc``.
HTTP status codes live only in the server, exit codes only in the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "DatabaseError",
    "EmbeddingModelMismatch",
    "IngestError",
    "InputError",
    "NotFound",
    "ProposalsError",
    "ProviderError",
    "RuntimeFailure",
    "UserError",
    "validation_message",
]


class ProposalsError(Exception):
    """Root of every error this package raises on purpose."""


class UserError(ProposalsError):
    """Something the user can correct: configuration, input files, arguments."""


class ConfigError(UserError):
    """Settings are missing, malformed or contradict each other."""


class InputError(UserError):
    """A request, file, option or argument is not acceptable."""


class NotFound(InputError):
    """No such id. Another tenant's id is reported the same way: existence is not revealed."""


class EmbeddingModelMismatch(UserError):
    """The index was built with another embedding model; vectors cannot be mixed."""


class RuntimeFailure(ProposalsError):
    """Work could not be finished for a reason outside the user's input."""


class DatabaseError(RuntimeFailure):
    """PostgreSQL is unreachable, lacks pgvector, or a migration failed."""


class IngestError(RuntimeFailure):
    """One file could not be ingested. Carries the path and a human reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ProviderError(RuntimeFailure):
    """An LLM or embedding provider failed. Subclassed in ``proposals.llm``."""


class BudgetExceeded(RuntimeFailure):
    """A configured token or cost budget was reached; work stops cleanly."""


def validation_message(exc: Any, labels: Mapping[str, str] | None = None) -> str:
    """One line from a pydantic ``ValidationError``: each problem as ``field: reason``.

    ``labels`` renames fields for the user (``{"options.themes": "--themes"}``); a field not
    named there is shown as its dotted path. Pydantic's "Value error, " prefix is dropped.
    """
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()))
        name = (labels or {}).get(loc) or (labels or {}).get(loc.rsplit(".", 1)[-1]) or loc
        msg = str(error.get("msg", "invalid"))
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if error.get("type") == "missing":
            msg = "is required"
        parts.append(f"{name}: {msg}" if name else msg)
    return "; ".join(dict.fromkeys(parts)) or str(exc).splitlines()[0]
