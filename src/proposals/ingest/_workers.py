"""Parse large PDF, DOCX and HTML files in worker processes, ahead of the pipeline.

pypdf, python-docx and BeautifulSoup are pure Python: on the ingest's splitting thread they
hold the interpreter lock most of the time, so parsing ran on one core and slowed the
embedder's thread (its Python side waits for the lock between model operations). A small pool
of worker processes parses the next few such files while the previous ones are embedded; the
result is the same :class:`ParsedFile` (title, labels, blocks), so the chunks made from it are
the same as in-process parsing.

The pool starts only for a run with at least two such files of at least ``POOL_MIN_BYTES``
each (small files parse in milliseconds, cheaper than starting a process), and stops at the
end of the run. A file's problem comes back as its :class:`IngestFailure`. If a worker dies
(killed; or a script without an ``if __name__ == "__main__":`` guard, which spawned workers
cannot start from), the rest of the run's files are parsed in-process, as without a pool. A
cancelled run does not wait for its workers: each exits after the file it is reading.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import IngestError
from ._model import IngestFailure
from ._parse import ParsedFile, parse_file

__all__ = ["POOLED_SUFFIXES", "POOL_MIN_BYTES", "ParseOptions", "WorkerParser", "parse_or_fail"]

log = logging.getLogger(__name__)

POOLED_SUFFIXES = frozenset({".pdf", ".docx", ".html", ".htm"})
POOL_MIN_BYTES = 128 * 1024
"""Smaller files are parsed on the ingest's own splitting thread."""
_WORKERS = 2

ParseOptions = tuple[str | None, str | None, float]
"""(country, doc_type, max_mb): the user's overrides and the size limit."""


def parse_or_fail(
    path: Path, root: Path | None, options: ParseOptions
) -> ParsedFile | IngestFailure:
    """``parse_file`` with a file's problem returned as its failure (what a worker sends back:
    ``IngestError`` itself does not survive pickling)."""
    country, doc_type, max_mb = options
    try:
        return parse_file(path, root, country=country, doc_type=doc_type, max_mb=max_mb)
    except IngestError as exc:
        return IngestFailure(exc.path, exc.reason)
    except Exception as exc:  # a loader bug must not sink the other files
        log.exception("unexpected error reading %s", path)
        return IngestFailure(str(path), f"unexpected error: {exc!r}")


def _pooled(path: Path) -> bool:
    if path.suffix.lower() not in POOLED_SUFFIXES:
        return False
    try:
        return path.stat().st_size >= POOL_MIN_BYTES
    except OSError:
        return False  # parse_file reports it


class WorkerParser:
    """Parses the pooled files of a run in worker processes, a few files ahead.

    ``files`` are the run's files in order; :meth:`parse` is then called for each of them in
    that order and returns its result, or None for a file that is not pooled (the caller
    parses it). :meth:`close` stops the workers (call it in a ``finally``).
    """

    def __init__(
        self,
        files: Sequence[tuple[Path, Path | None]],
        options: ParseOptions,
        *,
        workers: int | None = None,
    ) -> None:
        self._options = options
        self._queue = [(p, r) for p, r in files if _pooled(p)]
        self._workers = workers or max(1, min(_WORKERS, os.cpu_count() or 1))
        self._ahead = self._workers + 1
        self._next = 0  # index in _queue of the next file to submit
        self._futures: dict[Path, Future[ParsedFile | IngestFailure]] = {}
        self._pool: ProcessPoolExecutor | None = None
        self.enabled = len(self._queue) >= 2

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the ingesting process has threads (the model's, the event loop's helpers),
            # which a forked child must not inherit.
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _fill(self) -> None:
        while self.enabled and len(self._futures) < self._ahead and self._next < len(self._queue):
            path, root = self._queue[self._next]
            self._next += 1
            try:
                future = self._start().submit(parse_or_fail, path, root, self._options)
            except BrokenProcessPool as exc:
                self._give_up(exc, path)
                return
            self._futures[path] = future

    def _give_up(self, exc: BaseException, path: Path) -> None:
        """A worker died: parse the rest in-process, as without a pool."""
        log.warning("a parser process died (%s); parsing in-process from %s on", exc, path)
        self.enabled = False
        self._futures.clear()
        self._stop(wait=False)

    async def parse(self, path: Path) -> ParsedFile | IngestFailure | None:
        """The result for ``path`` if it is pooled (waiting for its worker), else None."""
        self._fill()
        future = self._futures.pop(path, None)
        if future is None:
            return None
        try:
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            self._give_up(exc, path)
            return None
        self._fill()
        return result

    def busy(self) -> int:
        """Workers busy now (files submitted and not finished): cores the run's parsing uses.
        Called from the embedder's thread: it reads a copy of the futures."""
        if self._pool is None:
            return 0
        futures = list(self._futures.values())
        return min(self._workers, sum(not f.done() for f in futures))

    def _stop(self, *, wait: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Never terminate the workers: on Python 3.11 a pool whose workers were killed can
        # leave its manager thread spinning forever (seen here once at exit and once in
        # shutdown). Without waiting, queued files are cancelled and each worker exits
        # after the file it is reading.
        pool.shutdown(wait=wait, cancel_futures=True)

    async def close(self, *, finished: bool) -> None:
        """Stop the workers: wait for them after a finished run; otherwise let them end
        after their current file, without waiting."""
        if finished:
            await asyncio.to_thread(self._stop, wait=True)
        else:
            self._stop(wait=False)
