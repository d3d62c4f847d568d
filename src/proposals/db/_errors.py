"""Translate psycopg's exceptions into the project's own at the database boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ..errors import DatabaseError

__all__ = ["database_errors"]


@contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """Re-raise any ``psycopg.Error`` inside the block as :class:`DatabaseError`
    ``"could not {doing}: ..."`` (the original kept as ``__cause__``)."""
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(f"could not {doing}: {exc}") from exc
