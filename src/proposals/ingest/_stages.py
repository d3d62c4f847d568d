"""The stages of an ingest, one function or object each, shared by every way of running them.

``prepare_file`` (read, hash, load, resolve metadata, split) is synchronous, takes and returns
plain picklable data, and never touches the database: it runs on a thread of the local ingest
or as a task on a Ray cluster alike. ``embedding_text`` is what the embedder sees of a chunk.
``DocumentSink`` decides what a prepared file needs (nothing, new labels, or embedding), writes
each document in one transaction (idempotent by content hash) and keeps the report and the
progress ticks. The local pipeline and the Ray pipeline are two drivers of these same pieces.

Underneath, ``parse_file`` (hash and labels, chunks made lazily, text streamed from disk) and
``DocumentWriter`` (one transaction, any number of slices) let a driver stream a large file:
the local pipeline does (``DocumentSink.writer`` / ``stored_slice`` / ``commit``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import psycopg

from ..db import Database
from ..errors import IngestError
from ..store import Store, check_index_model
from ._meta import ResolvedMeta
from ._model import Chunk, IngestFailure, IngestReport
from ._parse import ParsedFile, parse_file
from ._writer import DocumentWriter

__all__ = [
    "DocumentSink",
    "IngestProgress",
    "PreparedFile",
    "ProgressCallback",
    "StoredDocument",
    "embedding_text",
    "needs_embedding",
    "prepare_file",
]


@dataclass(slots=True, frozen=True)
class IngestProgress:
    """Reported after each file (what happened to it, and how far the run is), and after each
    stored slice of a large file (status ``storing``, its chunks stored so far)."""

    path: str
    status: str
    """``added``, ``updated``, ``relabelled``, ``unchanged``, ``failed`` or ``storing``."""
    done: int
    """Files finished so far."""
    total: int
    chunks: int = 0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass(slots=True, frozen=True)
class StoredDocument:
    """What the database already holds for a path: enough to skip or relabel the file."""

    id: int
    content_hash: str
    title: str
    country: str | None
    doc_type: str
    embedding_model: str


@dataclass(slots=True)
class PreparedFile:
    """One file read, hashed, labelled and (when it needs embedding) split."""

    key: str
    """The stored path (absolute, POSIX form)."""
    digest: str
    meta: ResolvedMeta
    file_meta: dict[str, Any]
    """The file's own metadata plus its format and size in bytes, as stored."""
    chunks: list[Chunk] | None
    """None when the stored document has this content and model: nothing to embed."""


def prepare_file(
    path: Path,
    root: Path | None,
    *,
    stored: StoredDocument | None,
    embedding_model: str,
    chunk_tokens: int,
    overlap: int,
    max_mb: float,
    country: str | None = None,
    doc_type: str | None = None,
) -> PreparedFile:
    """Read, hash, load and label ``path``; split it unless ``stored`` already has it.

    ``country`` / ``doc_type`` are the user's overrides (``country=None``: not forced;
    ``"global"``: forced to no country). Raises :class:`IngestError` naming the file.
    """
    parsed = parse_file(path, root, country=country, doc_type=doc_type, max_mb=max_mb)
    chunks = None
    if needs_embedding(parsed, stored, embedding_model):
        chunks = list(parsed.chunks(chunk_tokens, overlap))
    return PreparedFile(parsed.key, parsed.digest, parsed.meta, parsed.file_meta, chunks)


def needs_embedding(
    item: ParsedFile | PreparedFile, stored: StoredDocument | None, embedding_model: str
) -> bool:
    """Whether a file's chunks must be (re-)embedded: new, changed, or another model's."""
    return (
        stored is None
        or stored.content_hash != item.digest
        or stored.embedding_model != embedding_model
    )


def embedding_text(title: str, chunk: Chunk) -> str:
    """What the embedder sees: the chunk under its title and section, for context."""
    head = title if not chunk.section else f"{title} — {chunk.section}"
    return f"{head}\n\n{chunk.text}"


class DocumentSink:
    """Where prepared files end up: skipped, relabelled or written, with report and progress.

    Call :meth:`open` once (checks the index's model, reads what is stored), then for each
    file :meth:`settle` (True: nothing to embed, already handled) or :meth:`write` with its
    vectors, or :meth:`fail`. Each written document is one transaction: its row and all of its
    chunks, or nothing.
    """

    def __init__(
        self,
        database: Database,
        embedding_model: str,
        *,
        tenant: str,
        progress: ProgressCallback | None = None,
        report: IngestReport | None = None,
    ) -> None:
        self.db = database
        self.embedding_model = embedding_model
        self.tenant = tenant
        self.progress = progress
        self.report = report if report is not None else IngestReport()
        self.stored: dict[str, StoredDocument] = {}
        self.done = 0
        self.total = 0

    async def open(self, total: int, *, reset_index: bool = False) -> dict[str, StoredDocument]:
        """Check the index's model and load the tenant's stored documents (by path);
        ``reset_index`` first deletes everything (to switch embedding models)."""
        self.total = total
        if reset_index:
            await Store(self.db).reset_index()
        async with self.db.pool.connection() as conn:
            await check_index_model(conn, self.embedding_model)
            cur = await conn.execute(
                "SELECT path, id, content_hash, title, country, doc_type, embedding_model "
                "FROM documents WHERE tenant = %s",
                (self.tenant,),
            )
            self.stored = {r[0]: StoredDocument(*r[1:]) for r in await cur.fetchall()}
        return self.stored

    async def close(self, prune: Sequence[str | PathLike[str]] = ()) -> None:
        """Finish: remove stored documents under the ``prune`` paths whose file is gone, and
        give a country that grew past the threshold its own vector index (once per ingest,
        not inside a document's transaction)."""
        if prune:
            await self._prune(prune)
        if self.report.chunks_written:
            await Store(self.db).ensure_country_indexes()

    async def _prune(self, paths: Sequence[str | PathLike[str]]) -> None:
        def missing() -> list[tuple[str, int]]:
            roots = [Path(p).expanduser().resolve() for p in paths]
            found = []
            for key, row in self.stored.items():
                path = Path(key)
                under = any(path == r or r in path.parents for r in roots)
                if under and not path.exists():
                    found.append((key, row.id))
            return found

        gone = await asyncio.to_thread(missing)
        if not gone:
            return
        async with self.db.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM documents WHERE id = ANY(%s)", ([g[1] for g in gone],))
        self.report.removed.extend(g[0] for g in gone)

    def fail(self, failure: IngestFailure) -> None:
        """Record a file that could not be ingested, with its reason."""
        self.report.failed.append(failure)
        self._tick(failure.path, "failed")

    def _tick(self, path: str, status: str, chunks: int = 0) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(IngestProgress(path, status, self.done, self.total, chunks))

    async def settle(self, item: PreparedFile) -> bool:
        """Handle a file that needs no embedding (unchanged or only relabelled); True if so.

        A file that needs embedding but has no text is failed here (also True).
        """
        if item.chunks is not None:
            if not item.chunks:
                self.fail(IngestFailure(item.key, "no text left after splitting"))
                return True
            return False
        old = self.stored[item.key]
        meta = item.meta
        if (old.title, old.country, old.doc_type) == (meta.title, meta.country, meta.doc_type):
            self.report.unchanged.append(item.key)
            self._tick(item.key, "unchanged")
            return True
        async with self.db.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE documents SET title = %s, country = %s, doc_type = %s, updated_at = now()"
                " WHERE id = %s",
                (meta.title, meta.country, meta.doc_type, old.id),
            )
            await conn.execute(
                "UPDATE chunks SET country = %s, doc_type = %s WHERE document_id = %s",
                (meta.country, meta.doc_type, old.id),
            )
        self.report.relabelled.append(item.key)
        self._tick(item.key, "relabelled")
        return True

    async def write(self, item: PreparedFile, vectors: Any) -> None:
        """Store a document and its chunks with their vectors (one row each, in order),
        replacing what it had; a failure is recorded against the file, not raised."""
        writer = self.writer(item, int(vectors.shape[1]))
        try:
            await writer.write(item.chunks or [], vectors)
        except BaseException as exc:
            await writer.abort()
            if isinstance(exc, IngestError | psycopg.Error):
                self.fail(IngestFailure(item.key, _reason(exc)))
                return
            raise
        await self.commit(writer)

    def writer(self, item: ParsedFile | PreparedFile, dim: int) -> DocumentWriter:
        """A writer for one document of ``dim``-dimensional vectors, to fill in slices and
        end with :meth:`commit` (or its own ``abort``)."""
        return DocumentWriter(
            self.db, item, model=self.embedding_model, dim=dim, tenant=self.tenant
        )

    def stored_slice(self, writer: DocumentWriter) -> None:
        """Report a slice of a large document written (not yet committed)."""
        if self.progress is not None:
            self.progress(
                IngestProgress(writer.item.key, "storing", self.done, self.total, writer.chunks)
            )

    async def commit(self, writer: DocumentWriter) -> None:
        """Commit a written document; count it as added or updated. A database failure is
        recorded against the file, not raised."""
        key = writer.item.key
        try:
            await writer.commit()
        except psycopg.Error as exc:
            await writer.abort()
            self.fail(IngestFailure(key, _reason(exc)))
            return
        added = key not in self.stored
        (self.report.added if added else self.report.updated).append(key)
        self.report.chunks_written += writer.chunks
        self.report.tokens_written += writer.tokens
        self._tick(key, "added" if added else "updated", writer.chunks)


def _reason(exc: BaseException) -> str:
    """A file's failure reason for a write error."""
    if isinstance(exc, IngestError):
        return exc.reason
    return f"database error: {str(exc).strip()}"
