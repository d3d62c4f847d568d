"""Database access: one PostgreSQL (with pgvector) for everything.

No URL configured: a private PostgreSQL 16 + pgvector from the ``pgserver`` package is started
in the data folder and reused on later runs. URL configured: that server is used. Versioned SQL
migrations in ``migrations/`` are applied on open, idempotently, under an advisory lock.
"""

from ._connect import Database
from ._errors import database_errors
from ._migrate import MIGRATIONS_PACKAGE, Migration, applied_migrations, load_migrations, migrate

__all__ = [
    "MIGRATIONS_PACKAGE",
    "Database",
    "Migration",
    "applied_migrations",
    "database_errors",
    "load_migrations",
    "migrate",
]
