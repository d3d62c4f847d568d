"""Ingest files: parse, split, embed, store — idempotent by content hash, in bounded memory.

Three stages run at once, joined by small queues: parsing and splitting (one thread; large
PDF, DOCX and HTML files are parsed a few files ahead in worker processes, see ``_workers``),
embedding (the embedder's thread) and writing (the event loop). A file's chunks flow through in slices of
``_SLICE``, so a large file is never held whole: it is written slice by slice inside one
transaction that commits when its last slice is stored (a file is stored whole or not at all).
A file that fails is recorded with its reason and the others go on; only a whole-run problem
(wrong embedding model, unreachable database) stops the run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg

from ..config import DEFAULT_TENANT, Settings
from ..db import Database
from ..embeddings import Embedder, cores_busy_elsewhere, embedder_from_settings
from ..errors import ConfigError, EmbeddingModelMismatch, IngestError, ProviderError
from ..vocabulary import normalize_country, normalize_doc_type
from ._loaders import SUPPORTED_SUFFIXES
from ._model import Chunk, IngestFailure, IngestReport
from ._parse import ParsedFile
from ._stages import (
    DocumentSink,
    PreparedFile,
    ProgressCallback,
    StoredDocument,
    embedding_text,
    needs_embedding,
)
from ._workers import ParseOptions, WorkerParser, parse_or_fail
from ._writer import DocumentWriter

__all__ = ["ingest", "source_files"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_SPLITTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proposals-split")
_SLICE = 256
"""Chunks of one file taken at a time (a progress line between slices of a large file)."""
_EMBED_GROUP = 128
"""Chunks embedded per call at least (several small files together): the local model's
batches then stay full."""


@dataclass(slots=True)
class _Settle:
    item: PreparedFile
    """With ``chunks=None``: unchanged or only relabelled."""


@dataclass(slots=True)
class _Failed:
    failure: IngestFailure


@dataclass(slots=True)
class _Piece:
    file: ParsedFile
    chunks: list[Chunk]
    last: bool
    vectors: np.ndarray | None = None
    error: str | None = None


_Item = _Settle | _Failed | _Piece


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
    limit_mb = max_file_mb or (
        settings.max_file_mb if settings else Settings.model_fields["max_file_mb"].default
    )
    if database is not None:
        return await _Run(
            database, embedder, size, overlap, country, doc_type, progress, tenant, limit_mb
        ).run(paths, prune=prune, reset_index=reset_index)
    assert settings is not None
    async with await Database.open(settings) as db:
        return await _Run(
            db, embedder, size, overlap, country, doc_type, progress, tenant, limit_mb
        ).run(paths, prune=prune, reset_index=reset_index)


class _Run:
    def __init__(
        self,
        database: Database,
        embedder: Embedder,
        chunk_tokens: int,
        overlap: int,
        country: str | None,
        doc_type: str | None,
        progress: ProgressCallback | None,
        tenant: str,
        max_mb: float,
    ) -> None:
        self.db = database
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.sink = DocumentSink(database, embedder.name, tenant=tenant, progress=progress)
        self.report = self.sink.report
        self.stored: dict[str, StoredDocument] = {}
        self._options: ParseOptions = (country, doc_type, max_mb)
        self._workers = WorkerParser([], self._options)
        self._writer: DocumentWriter | None = None
        """The document being written (a large file's, between its slices)."""

    async def run(
        self, paths: Sequence[str | PathLike[str]], *, prune: bool, reset_index: bool
    ) -> IngestReport:
        started = time.perf_counter()
        files, failed, ignored = await asyncio.to_thread(source_files, paths)
        self.report.failed.extend(failed)
        self.report.ignored.extend(ignored)
        self.stored = await self.sink.open(len(files), reset_index=reset_index)

        # Three stages joined by small queues, so at most a few slices are held at once:
        # parse and split (one thread) -> embed (the embedder's thread) -> write (this loop).
        # The next group is gathered while one is embedded, and the database writes of one
        # group overlap the embedding of the next.
        parsed: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=4)
        embedded: asyncio.Queue[asyncio.Task[list[_Item]] | None] = asyncio.Queue(maxsize=2)
        # Large PDF, DOCX and HTML files are parsed ahead in worker processes.
        self._workers = WorkerParser(files, self._options)
        finished = False
        try:
            # While the workers parse, the local model leaves their cores to them: two
            # workers and two model threads on two cores spent ~20 % more CPU on SEC filings.
            with cores_busy_elsewhere(self._workers.busy):
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._produce(files, parsed))
                    tg.create_task(self._embed_stage(parsed, embedded, tg))
                    tg.create_task(self._write_stage(embedded))
            finished = True
        except BaseExceptionGroup as group:
            # One stage failed (the others were cancelled): raise its error, not a group.
            raise _first(group) from None
        finally:
            await self._workers.close(finished=finished)

        await self.sink.close(paths if prune else ())
        self.report.seconds = time.perf_counter() - started
        return self.report

    # -- stage 1: parse and split ---------------------------------------------------------------

    async def _produce(
        self, files: list[tuple[Path, Path | None]], out: asyncio.Queue[_Item | None]
    ) -> None:
        for path, root in files:
            parsed = await self._workers.parse(path)
            if parsed is None:
                parsed = await self._off_loop(parse_or_fail, path, root, self._options)
            if isinstance(parsed, IngestFailure):
                await out.put(_Failed(parsed))
                continue
            if not needs_embedding(parsed, self.stored.get(parsed.key), self.embedder.name):
                item = PreparedFile(parsed.key, parsed.digest, parsed.meta, parsed.file_meta, None)
                await out.put(_Settle(item))
                continue
            slices = _Slices(parsed.chunks(self.chunk_tokens, self.overlap))
            first = True
            while True:
                got = await self._off_loop(slices.take, _SLICE, path=parsed.key)
                if isinstance(got, IngestFailure):
                    await out.put(_Failed(got))
                    break
                chunks, last = got
                if first and last and not chunks:
                    await out.put(
                        _Failed(IngestFailure(parsed.key, "no text left after splitting"))
                    )
                    break
                await out.put(_Piece(parsed, chunks, last))
                first = False
                if last:
                    break
        await out.put(None)

    async def _off_loop(
        self, fn: Callable[..., _T], *args: Any, path: str | None = None
    ) -> _T | IngestFailure:
        """Run ``fn`` on the splitting thread; a file's problem comes back as its failure."""
        try:
            # One dedicated thread: tiktoken keeps a regex cache per calling thread, so a
            # pool of threads would hold several.
            return await asyncio.get_running_loop().run_in_executor(_SPLITTER, fn, *args)
        except IngestError as exc:
            return IngestFailure(path or exc.path, exc.reason)
        except Exception as exc:  # a loader bug must not sink the other files
            where = path or str(args[0])
            log.exception("unexpected error reading %s", where)
            return IngestFailure(where, f"unexpected error: {exc!r}")

    # -- stage 2: embed ---------------------------------------------------------------------------

    async def _embed_stage(
        self,
        source: asyncio.Queue[_Item | None],
        out: asyncio.Queue[asyncio.Task[list[_Item]] | None],
        tg: asyncio.TaskGroup,
    ) -> None:
        """Embed pieces in groups of about ``_EMBED_GROUP`` chunks (several small files
        together: one small file alone would make a batch too small for the model to run at
        speed); other items pass through in order. One group is embedded at a time, as a task
        handed to the writer at once: the next group is gathered meanwhile, and the writer
        stores one group while the next is embedded."""
        pending: list[_Item] = []
        count = 0
        running: asyncio.Task[list[_Item]] | None = None
        while (item := await source.get()) is not None:
            pending.append(item)
            if isinstance(item, _Piece):
                count += len(item.chunks)
            idle = running is None or running.done()
            if count >= _EMBED_GROUP or (count == 0 and idle):
                if running is not None and not running.done():
                    await asyncio.wait([running])
                running = tg.create_task(self._embed_group(pending))
                await out.put(running)
                pending, count = [], 0
        if pending:
            if running is not None and not running.done():
                await asyncio.wait([running])
            await out.put(tg.create_task(self._embed_group(pending)))
        await out.put(None)

    async def _embed_group(self, items: list[_Item]) -> list[_Item]:
        pieces = [i for i in items if isinstance(i, _Piece)]
        texts = [embedding_text(p.file.meta.title, c) for p in pieces for c in p.chunks]
        vectors = None
        error = None
        if texts:
            t0 = time.perf_counter()
            try:
                vectors = await self.embedder.embed(texts)
            except EmbeddingModelMismatch:
                raise
            except ProviderError as exc:
                error = f"embedding failed: {exc}"
            self.report.embed_seconds += time.perf_counter() - t0
        start = 0
        for piece in pieces:
            n = len(piece.chunks)
            if vectors is not None:
                piece.vectors = vectors[start : start + n]
            piece.error = error
            start += n
        return items

    # -- stage 3: write ---------------------------------------------------------------------------

    async def _write_stage(self, source: asyncio.Queue[asyncio.Task[list[_Item]] | None]) -> None:
        """Store each file in one transaction, slice by slice; a file that fails part-way
        is rolled back whole (its previous version, if any, stays)."""
        dropped: set[str] = set()  # files that failed: their remaining pieces are skipped
        me = asyncio.current_task()
        try:
            while (group := await source.get()) is not None:
                for item in await group:
                    await self._store(item, dropped)
                    if me is not None and me.cancelling():
                        # Python 3.11's asyncio.wait_for (inside the connection pool) can
                        # swallow a cancellation; the other stages are gone by then, so
                        # waiting for the next group would wait forever.
                        raise asyncio.CancelledError
        except BaseException:
            if self._writer is not None:
                await self._writer.abort()
                self._writer = None
            raise

    async def _store(self, item: _Item, dropped: set[str]) -> None:
        if isinstance(item, _Settle):
            await self.sink.settle(item.item)
            return
        key = item.failure.path if isinstance(item, _Failed) else item.file.key
        if key in dropped:
            return
        failure: IngestFailure | None = None
        if isinstance(item, _Failed):
            failure = item.failure
        elif item.error is not None:
            failure = IngestFailure(key, item.error)
        else:
            try:
                await self._write_piece(item)
            except IngestError as exc:
                failure = IngestFailure(key, exc.reason)
            except psycopg.Error as exc:
                failure = IngestFailure(key, f"database error: {str(exc).strip()}")
        if failure is not None:
            if self._writer is not None and self._writer.item.key == key:
                await self._writer.abort()
                self._writer = None
            dropped.add(key)
            self.sink.fail(failure)

    async def _write_piece(self, piece: _Piece) -> None:
        """Write a slice into its document's transaction (opened by the first slice);
        commit it with the last."""
        assert piece.vectors is not None
        if self._writer is None:
            self._writer = self.sink.writer(piece.file, int(piece.vectors.shape[1]))
        await self._writer.write(piece.chunks, piece.vectors)
        if not piece.last:
            self.sink.stored_slice(self._writer)
            return
        writer, self._writer = self._writer, None
        await self.sink.commit(writer)


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first error of a task group that is not a cancellation (else the first)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


class _Slices:
    """Takes a file's chunks a slice at a time, knowing whether a slice is the last."""

    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self._chunks = chunks
        self._ahead: list[Chunk] = []

    def take(self, n: int) -> tuple[list[Chunk], bool]:
        out = self._ahead + list(itertools.islice(self._chunks, n - len(self._ahead)))
        self._ahead = list(itertools.islice(self._chunks, 1))
        return out, not self._ahead
