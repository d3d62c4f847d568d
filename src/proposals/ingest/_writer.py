"""Write one document and its chunks in one transaction, in as many slices as given."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

import numpy as np
from psycopg.types.json import Jsonb

from ..config import DEFAULT_TENANT
from ..db import Database
from ..store import ensure_index
from ._meta import ResolvedMeta
from ._model import Chunk

__all__ = ["DocumentWriter"]

_DUMPS = functools.partial(json.dumps, default=str, ensure_ascii=False)
# document_id, ord, text, section, page, token_count, country, doc_type, tenant, embedding
_CHUNK_COLUMN_TYPES = [
    *("int8", "int4", "text", "text", "int4", "int4", "text", "text", "text", "vector")
]


class _Document(Protocol):
    """What a document row is made of (a ``PreparedFile`` or a ``ParsedFile``)."""

    @property
    def key(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def meta(self) -> ResolvedMeta: ...
    @property
    def file_meta(self) -> dict[str, Any]: ...


class DocumentWriter:
    """One document and its chunks in one transaction, written in as many slices as given.

    ``async with DocumentWriter(db, item, model=..., dim=...) as w: await w.write(chunks,
    vectors)`` commits when the block ends normally; on an exception or a cancellation nothing
    of it is stored and its previous version, if any, stays whole. :meth:`open`,
    :meth:`commit` and :meth:`abort` do the same by hand. Holds one pooled connection while
    open.
    """

    def __init__(
        self,
        database: Database,
        item: _Document,
        *,
        model: str,
        dim: int,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        self.item = item
        self.document_id: int | None = None
        self.chunks = 0
        """Chunks written so far."""
        self.tokens = 0
        self._db = database
        self._model = model
        self._dim = dim
        self._tenant = tenant
        self._stack: contextlib.AsyncExitStack | None = None
        self._conn: Any = None

    async def open(self) -> None:
        """Begin the transaction: upsert the document's row, drop its old chunks."""
        # First, in a short transaction of its own: the index's lock is not held while a long
        # document streams in (nor could the index be re-typed under the open transaction).
        async with self._db.pool.connection() as conn, conn.transaction():
            await ensure_index(conn, self._model, self._dim)
        stack = contextlib.AsyncExitStack()
        item, meta = self.item, self.item.meta
        try:
            self._conn = await stack.enter_async_context(self._db.pool.connection())
            await stack.enter_async_context(self._conn.transaction())
            cur = await self._conn.execute(
                "INSERT INTO documents (tenant, path, title, content_hash, doc_type, country,"
                " metadata, embedding_model) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, path) DO UPDATE SET title = EXCLUDED.title,"
                " content_hash = EXCLUDED.content_hash, doc_type = EXCLUDED.doc_type,"
                " country = EXCLUDED.country, metadata = EXCLUDED.metadata,"
                " embedding_model = EXCLUDED.embedding_model, updated_at = now() "
                "RETURNING id",
                (
                    self._tenant,
                    item.key,
                    meta.title,
                    item.digest,
                    meta.doc_type,
                    meta.country,
                    Jsonb(item.file_meta, dumps=_DUMPS),
                    self._model,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            self.document_id = int(row[0])
            await self._conn.execute(
                "DELETE FROM chunks WHERE document_id = %s", (self.document_id,)
            )
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def write(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add a slice of the document's chunks with their vectors (one ``COPY``; the lexeme
        statistics trigger runs once per statement, not once per chunk)."""
        if self._stack is None:
            await self.open()
        if not chunks:
            return
        meta = self.item.meta
        async with (
            self._conn.cursor() as cur,
            cur.copy(
                "COPY chunks (document_id, ord, text, section, page, token_count, country,"
                " doc_type, tenant, embedding) FROM STDIN"
            ) as copy,
        ):
            copy.set_types(_CHUNK_COLUMN_TYPES)
            for c, vector in zip(chunks, vectors, strict=True):
                await copy.write_row(
                    (
                        self.document_id,
                        c.ord,
                        c.text,
                        c.section,
                        c.page,
                        c.token_count,
                        meta.country,
                        meta.doc_type,
                        self._tenant,
                        vector,
                    )
                )
        self.chunks += len(chunks)
        self.tokens += sum(c.token_count for c in chunks)

    async def commit(self) -> int:
        """Commit everything written; returns the document's id."""
        if self._stack is None:
            await self.open()
        stack, self._stack = self._stack, None
        assert stack is not None and self.document_id is not None
        await stack.aclose()
        return self.document_id

    async def abort(self) -> None:
        """Roll back: nothing of this document is stored (its previous version stays)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(_Aborted, _Aborted(), None)

    async def __aenter__(self) -> DocumentWriter:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
        else:
            await self.abort()


class _Aborted(Exception):
    """Passed to the transaction to roll it back."""
