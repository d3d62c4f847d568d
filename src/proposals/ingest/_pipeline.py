"""Ingest files: load, split, embed, store — idempotent by content hash, one file at a time.

Loading the next file (in a thread) overlaps with embedding the current one. A file that fails
is recorded with its reason and the others go on; only a whole-run problem (wrong embedding
model, unreachable database) stops the run.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..config import DEFAULT_TENANT, Settings
from ..db import Database
from ..embeddings import Embedder, embedder_from_settings
from ..errors import ConfigError, EmbeddingModelMismatch, IngestError, ProviderError
from ..store import Store, check_index_model, ensure_index
from ..vocabulary import normalize_country, normalize_doc_type
from ._loaders import SUPPORTED_SUFFIXES, load_bytes
from ._meta import UNSET, ResolvedMeta, resolve_meta
from ._model import Chunk, IngestFailure, IngestReport, LoadedDocument
from ._splitter import split_blocks

__all__ = ["IngestProgress", "ingest", "source_files"]

log = logging.getLogger(__name__)

_DUMPS = functools.partial(json.dumps, default=str, ensure_ascii=False)
_SPLITTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proposals-split")
# Chunks embedded per call (several small files together): the local model's batches then
# stay full, and a progress tick is never more than one such call away.
_EMBED_GROUP = 128


@dataclass(slots=True, frozen=True)
class IngestProgress:
    """Reported after each file: what happened to it, and how far the run is."""

    path: str
    status: str
    """``added``, ``updated``, ``relabelled``, ``unchanged`` or ``failed``."""
    done: int
    total: int
    chunks: int = 0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass(slots=True)
class _Source:
    path: Path
    root: Path | None


@dataclass(slots=True)
class _Prepared:
    source: _Source
    key: str
    digest: str
    meta: ResolvedMeta
    loaded: LoadedDocument
    file_meta: dict[str, Any]
    size: int
    chunks: list[Chunk] | None = None
    """Split in the loading thread, off the event loop; None for a file stored unchanged."""


def source_files(
    paths: Iterable[str | PathLike[str]],
) -> tuple[list[tuple[Path, Path | None]], list[IngestFailure], list[IngestFailure]]:
    """Expand files and folders into (file, root folder) pairs, in a stable order.

    Folders are walked recursively; hidden files, ``README*`` files and files of unsupported
    types met during a walk are *ignored* (listed, not failed). A named file that does not
    exist is a failure. Returns (files, failures, ignored).
    """
    files: list[tuple[Path, Path | None]] = []
    failed: list[IngestFailure] = []
    ignored: list[IngestFailure] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = found.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if found.name.upper().startswith("README"):
                    ignored.append(IngestFailure(str(found), "README files are not ingested"))
                    continue
                if found.suffix.lower() not in SUPPORTED_SUFFIXES:
                    ignored.append(IngestFailure(str(found), f"unsupported type {found.suffix!r}"))
                    continue
                if found not in seen:
                    seen.add(found)
                    files.append((found, path))
        elif path.is_file():
            if path not in seen:
                seen.add(path)
                files.append((path, None))
        else:
            failed.append(IngestFailure(str(path), "no such file or folder"))
    return files, failed, ignored


async def ingest(
    paths: Sequence[str | PathLike[str]],
    *,
    settings: Settings | None = None,
    database: Database | None = None,
    embedder: Embedder | None = None,
    country: str | None = None,
    doc_type: str | None = None,
    prune: bool = False,
    reset_index: bool = False,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    progress: ProgressCallback | None = None,
    tenant: str = DEFAULT_TENANT,
    max_file_mb: float | None = None,
) -> IngestReport:
    """Ingest files and folders into the chunk store; returns what happened to each file.

    Give ``settings`` (the database is opened and closed here, the embedder built from it) or
    both ``database`` and ``embedder``. ``country`` / ``doc_type`` override what the files and
    their folders say (``country="global"`` forces "no country"). A file whose content hash is
    already stored is skipped; a changed file has its chunks replaced in one transaction.
    ``prune`` removes stored documents under the given paths whose file no longer exists.
    ``reset_index`` first deletes everything (to switch embedding models). Documents are
    stored for ``tenant`` (paths are unique per tenant). A file larger than ``max_file_mb``
    (default: the settings', else 50) fails with its size and the limit, unread.

    Raises EmbeddingModelMismatch if the index holds another model's vectors; per-file problems
    are reported in ``IngestReport.failed`` instead of raised.
    """
    if database is None and settings is None:
        raise ConfigError("ingest() needs settings, or both database and embedder")
    if embedder is None:
        if settings is None:
            raise ConfigError("ingest() needs an embedder when no settings are given")
        embedder = embedder_from_settings(settings)
    # Without settings, the defaults are the settings' own (one place for them).
    fields = Settings.model_fields
    size = chunk_tokens or (settings.chunk_tokens if settings else fields["chunk_tokens"].default)
    overlap = (
        chunk_overlap
        if chunk_overlap is not None
        else (settings.chunk_overlap if settings else fields["chunk_overlap"].default)
    )
    if country is not None:
        normalize_country(country)  # a bad flag is the user's mistake: fail before any work
    normalize_doc_type(doc_type)
    forced_country = UNSET if country is None else country
    limit_mb = max_file_mb or (
        settings.max_file_mb if settings else Settings.model_fields["max_file_mb"].default
    )
    if database is not None:
        return await _Run(
            database, embedder, size, overlap, forced_country, doc_type, progress, tenant, limit_mb
        ).run(paths, prune=prune, reset_index=reset_index)
    assert settings is not None
    async with await Database.open(settings) as db:
        return await _Run(
            db, embedder, size, overlap, forced_country, doc_type, progress, tenant, limit_mb
        ).run(paths, prune=prune, reset_index=reset_index)


class _Run:
    def __init__(
        self,
        database: Database,
        embedder: Embedder,
        chunk_tokens: int,
        overlap: int,
        country: Any,
        doc_type: str | None,
        progress: ProgressCallback | None,
        tenant: str,
        max_mb: float,
    ) -> None:
        self.db = database
        self.max_mb = max_mb
        self.tenant = tenant
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.country = country
        self.doc_type = doc_type
        self.progress = progress
        self.report = IngestReport()
        self.existing: dict[str, tuple[Any, ...]] = {}
        self.done = 0
        self.total = 0

    async def run(
        self, paths: Sequence[str | PathLike[str]], *, prune: bool, reset_index: bool
    ) -> IngestReport:
        started = time.perf_counter()
        files, failed, ignored = await asyncio.to_thread(source_files, paths)
        self.report.failed.extend(failed)
        self.report.ignored.extend(ignored)
        self.total = len(files)
        if reset_index:
            await Store(self.db).reset_index()
        async with self.db.pool.connection() as conn:
            await check_index_model(conn, self.embedder.name)
            cur = await conn.execute(
                "SELECT path, id, content_hash, title, country, doc_type, embedding_model "
                "FROM documents WHERE tenant = %s",
                (self.tenant,),
            )
            existing = {r[0]: r[1:] for r in await cur.fetchall()}

        queue: asyncio.Queue[_Prepared | IngestFailure | None] = asyncio.Queue(maxsize=3)

        async def produce() -> None:
            for path, root in files:
                await queue.put(await self._prepare(_Source(path, root)))
            await queue.put(None)

        self.existing = existing
        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            # Files are embedded in groups of about _EMBED_GROUP chunks: one small file alone
            # would make a batch too small for the model to run at speed.
            group: list[_Prepared] = []
            while (item := await queue.get()) is not None:
                if isinstance(item, IngestFailure):
                    self._fail(item)
                    continue
                if not await self._settle(item, existing.get(item.key)):
                    group.append(item)
                if sum(len(g.chunks or ()) for g in group) >= _EMBED_GROUP:
                    await self._store(group, existing)
                    group = []
            await self._store(group, existing)

        if prune:
            await self._prune(paths, existing)
        if self.report.chunks_written:
            # A country that grew past the threshold gets its own vector index now, once per
            # ingest rather than inside a document's transaction.
            await Store(self.db).ensure_country_indexes()
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def _prepare(self, source: _Source) -> _Prepared | IngestFailure:
        try:
            # Loading and splitting on one dedicated thread: tiktoken keeps a regex cache per
            # calling thread, so a pool of threads would hold several.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(_SPLITTER, self._prepare_sync, source)
        except IngestError as exc:
            return IngestFailure(str(source.path), exc.reason)
        except Exception as exc:  # a loader bug must not sink the other files
            log.exception("unexpected error loading %s", source.path)
            return IngestFailure(str(source.path), f"unexpected error: {exc!r}")

    def _prepare_sync(self, source: _Source) -> _Prepared:
        try:
            size_mb = source.path.stat().st_size / (1024 * 1024)
            if size_mb > self.max_mb:
                raise IngestError(
                    str(source.path),
                    f"file is {size_mb:.3g} MB, over the {self.max_mb:g} MB limit "
                    "(PROPOSALS_MAX_FILE_MB); split it, or raise the limit",
                )
            data = source.path.read_bytes()
        except OSError as exc:
            raise IngestError(str(source.path), f"cannot read file: {exc.strerror or exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        loaded = load_bytes(data, source.path)
        meta = resolve_meta(
            source.path,
            source.root,
            loaded.metadata,
            loaded.title,
            country=self.country,
            doc_type=self.doc_type,
        )
        key = source.path.as_posix()
        old = self.existing.get(key)
        chunks = None
        if old is None or old[1] != digest or old[5] != self.embedder.name:
            chunks = split_blocks(loaded.blocks, self.chunk_tokens, self.overlap)
        return _Prepared(source, key, digest, meta, loaded, loaded.metadata, len(data), chunks)

    def _fail(self, failure: IngestFailure) -> None:
        self.report.failed.append(failure)
        self._tick(failure.path, "failed")

    def _tick(self, path: str, status: str, chunks: int = 0) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(IngestProgress(path, status, self.done, self.total, chunks))

    async def _settle(self, item: _Prepared, old: tuple[Any, ...] | None) -> bool:
        """Handle a file that needs no embedding (unchanged or only relabelled); True if so."""
        meta = item.meta
        if item.chunks is not None:
            return False
        if old is not None and (old[2], old[3], old[4]) == (
            meta.title,
            meta.country,
            meta.doc_type,
        ):
            self.report.unchanged.append(item.key)
            self._tick(item.key, "unchanged")
            return True
        assert old is not None
        await self._relabel(old[0], meta)
        self.report.relabelled.append(item.key)
        self._tick(item.key, "relabelled")
        return True

    async def _store(self, group: list[_Prepared], existing: dict[str, tuple[Any, ...]]) -> None:
        """Embed the chunks of several files in one call, then write each file."""
        ready: list[_Prepared] = []
        for item in group:
            if item.chunks:
                ready.append(item)
            else:
                self._fail(IngestFailure(item.key, "no text left after splitting"))
        if not ready:
            return
        texts = [_embedding_text(i.meta.title, c) for i in ready for c in i.chunks or ()]
        t0 = time.perf_counter()
        try:
            vectors = await self.embedder.embed(texts)
        except EmbeddingModelMismatch:
            raise
        except ProviderError as exc:
            for item in ready:
                self._fail(IngestFailure(item.key, f"embedding failed: {exc}"))
            return
        self.report.embed_seconds += time.perf_counter() - t0
        start = 0
        for item in ready:
            chunks = item.chunks or []
            mine = vectors[start : start + len(chunks)]
            start += len(chunks)
            old = existing.get(item.key)
            try:
                await self._write(item, chunks, mine)
            except IngestError as exc:
                self._fail(IngestFailure(item.key, exc.reason))
                continue
            except psycopg.Error as exc:
                self._fail(IngestFailure(item.key, f"database error: {str(exc).strip()}"))
                continue
            status = "added" if old is None else "updated"
            (self.report.added if old is None else self.report.updated).append(item.key)
            self.report.chunks_written += len(chunks)
            self.report.tokens_written += sum(c.token_count for c in chunks)
            self._tick(item.key, status, len(chunks))

    async def _write(self, item: _Prepared, chunks: list[Chunk], vectors: Any) -> None:
        meta = item.meta
        file_meta = {
            **item.file_meta,
            "source_format": item.source.path.suffix.lower().lstrip("."),
            "bytes": item.size,
        }
        async with self.db.pool.connection() as conn, conn.transaction():
            await ensure_index(conn, self.embedder.name, int(vectors.shape[1]))
            cur = await conn.execute(
                "INSERT INTO documents (tenant, path, title, content_hash, doc_type, country,"
                " metadata, embedding_model) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, path) DO UPDATE SET title = EXCLUDED.title,"
                " content_hash = EXCLUDED.content_hash, doc_type = EXCLUDED.doc_type,"
                " country = EXCLUDED.country, metadata = EXCLUDED.metadata,"
                " embedding_model = EXCLUDED.embedding_model, updated_at = now() "
                "RETURNING id",
                (
                    self.tenant,
                    item.key,
                    meta.title,
                    item.digest,
                    meta.doc_type,
                    meta.country,
                    Jsonb(file_meta, dumps=_DUMPS),
                    self.embedder.name,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            doc_id = row[0]
            await conn.execute("DELETE FROM chunks WHERE document_id = %s", (doc_id,))
            # COPY: one statement for all of a document's chunks (the lexeme statistics
            # trigger then runs once per document, not once per chunk).
            async with (
                conn.cursor() as cur2,
                cur2.copy(
                    "COPY chunks (document_id, ord, text, section, page, token_count, country,"
                    " doc_type, tenant, embedding) FROM STDIN"
                ) as copy,
            ):
                copy.set_types(
                    [
                        "int8",
                        "int4",
                        "text",
                        "text",
                        "int4",
                        "int4",
                        "text",
                        "text",
                        "text",
                        "vector",
                    ]
                )
                for i, c in enumerate(chunks):
                    await copy.write_row(
                        (
                            doc_id,
                            c.ord,
                            c.text,
                            c.section,
                            c.page,
                            c.token_count,
                            meta.country,
                            meta.doc_type,
                            self.tenant,
                            vectors[i],
                        )
                    )

    async def _relabel(self, doc_id: int, meta: ResolvedMeta) -> None:
        async with self.db.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE documents SET title = %s, country = %s, doc_type = %s, updated_at = now()"
                " WHERE id = %s",
                (meta.title, meta.country, meta.doc_type, doc_id),
            )
            await conn.execute(
                "UPDATE chunks SET country = %s, doc_type = %s WHERE document_id = %s",
                (meta.country, meta.doc_type, doc_id),
            )

    async def _prune(
        self, paths: Sequence[str | PathLike[str]], existing: dict[str, tuple[Any, ...]]
    ) -> None:
        def missing() -> list[tuple[str, int]]:
            roots = [Path(p).expanduser().resolve() for p in paths]
            found = []
            for stored, row in existing.items():
                path = Path(stored)
                under = any(path == r or r in path.parents for r in roots)
                if under and not path.exists():
                    found.append((stored, row[0]))
            return found

        gone = await asyncio.to_thread(missing)
        if not gone:
            return
        async with self.db.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM documents WHERE id = ANY(%s)", ([g[1] for g in gone],))
        self.report.removed.extend(g[0] for g in gone)


def _embedding_text(title: str, chunk: Chunk) -> str:
    """What the embedder sees: the chunk under its title and section, for context."""
    head = title if not chunk.section else f"{title} — {chunk.section}"
    return f"{head}\n\n{chunk.text}"
