"""Database access: one PostgreSQL (with pgvector) for everything.

No URL configured: a private PostgreSQL 16 + pgvector from the ``pgserver`` package is started
in the data folder by the first process that needs it and stopped when the last live one is
done (see ``_embedded`` for the lifecycle). URL configured: that server is used. Versioned SQL
migrations in ``migrations/`` are applied on open, idempotently, under an advisory lock.
"""

from ._connect import Database, discard_pipelined
from ._embedded import EmbeddedStatus, embedded_status, stop_embedded
from ._errors import database_errors
from ._migrate import MIGRATIONS_PACKAGE, Migration, applied_migrations, load_migrations, migrate

__all__ = [
    "MIGRATIONS_PACKAGE",
    "Database",
    "EmbeddedStatus",
    "Migration",
    "applied_migrations",
    "database_errors",
    "discard_pipelined",
    "embedded_status",
    "load_migrations",
    "migrate",
    "stop_embedded",
]
