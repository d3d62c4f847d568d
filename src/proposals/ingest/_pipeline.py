"""Ingest files: load, split, embed, store — idempotent by content hash, one file at a time.

Loading the next file (in a thread) overlaps with embedding the current one. A file that fails
is recorded with its reason and the others go on; only a whole-run problem (wrong embedding
model, unreachable database) stops the run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from ..config import DEFAULT_TENANT, Settings
from ..db import Database
from ..embeddings import Embedder, embedder_from_settings
from ..errors import ConfigError, EmbeddingModelMismatch, IngestError, ProviderError
from ..vocabulary import normalize_country, normalize_doc_type
from ._loaders import SUPPORTED_SUFFIXES
from ._model import IngestFailure, IngestReport
from ._stages import (
    DocumentSink,
    PreparedFile,
    ProgressCallback,
    StoredDocument,
    embedding_text,
    prepare_file,
)

__all__ = ["ingest", "source_files"]

log = logging.getLogger(__name__)

_SPLITTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proposals-split")
# Chunks embedded per call (several small files together): the local model's batches then
# stay full, and a progress tick is never more than one such call away.
_EMBED_GROUP = 128


@dataclass(slots=True)
class _Source:
    path: Path
    root: Path | None


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
        self.sink = DocumentSink(database, embedder.name, tenant=tenant, progress=progress)
        self.report = self.sink.report
        self.stage = functools.partial(
            prepare_file,
            embedding_model=embedder.name,
            chunk_tokens=chunk_tokens,
            overlap=overlap,
            max_mb=max_mb,
            country=country,
            doc_type=doc_type,
        )

    async def run(
        self, paths: Sequence[str | PathLike[str]], *, prune: bool, reset_index: bool
    ) -> IngestReport:
        started = time.perf_counter()
        files, failed, ignored = await asyncio.to_thread(source_files, paths)
        self.report.failed.extend(failed)
        self.report.ignored.extend(ignored)
        stored = await self.sink.open(len(files), reset_index=reset_index)

        queue: asyncio.Queue[PreparedFile | IngestFailure | None] = asyncio.Queue(maxsize=3)

        async def produce() -> None:
            for path, root in files:
                await queue.put(await self._prepare(_Source(path, root), stored))
            await queue.put(None)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            # Files are embedded in groups of about _EMBED_GROUP chunks: one small file alone
            # would make a batch too small for the model to run at speed.
            group: list[PreparedFile] = []
            while (item := await queue.get()) is not None:
                if isinstance(item, IngestFailure):
                    self.sink.fail(item)
                    continue
                if not await self.sink.settle(item):
                    group.append(item)
                if sum(len(g.chunks or ()) for g in group) >= _EMBED_GROUP:
                    await self._store(group)
                    group = []
            await self._store(group)

        await self.sink.close(paths if prune else ())
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def _prepare(
        self, source: _Source, stored: dict[str, StoredDocument]
    ) -> PreparedFile | IngestFailure:
        try:
            # Loading and splitting on one dedicated thread: tiktoken keeps a regex cache per
            # calling thread, so a pool of threads would hold several.
            loop = asyncio.get_running_loop()
            old = stored.get(source.path.as_posix())
            call = functools.partial(self.stage, source.path, source.root, stored=old)
            return await loop.run_in_executor(_SPLITTER, call)
        except IngestError as exc:
            return IngestFailure(str(source.path), exc.reason)
        except Exception as exc:  # a loader bug must not sink the other files
            log.exception("unexpected error loading %s", source.path)
            return IngestFailure(str(source.path), f"unexpected error: {exc!r}")

    async def _store(self, group: list[PreparedFile]) -> None:
        """Embed the chunks of several files in one call, then write each file."""
        if not group:
            return
        texts = [embedding_text(i.meta.title, c) for i in group for c in i.chunks or ()]
        t0 = time.perf_counter()
        try:
            vectors = await self.embedder.embed(texts)
        except EmbeddingModelMismatch:
            raise
        except ProviderError as exc:
            for item in group:
                self.sink.fail(IngestFailure(item.key, f"embedding failed: {exc}"))
            return
        self.report.embed_seconds += time.perf_counter() - t0
        start = 0
        for item in group:
            n = len(item.chunks or ())
            await self.sink.write(item, vectors[start : start + n])
            start += n
