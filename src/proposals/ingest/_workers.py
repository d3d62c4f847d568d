"""Parse large PDF, DOCX and HTML files in worker processes, ahead of the pipeline.

pypdf, python-docx and BeautifulSoup are pure Python: on the ingest's splitting thread they
hold the interpreter lock most of the time, so parsing ran on one core and slowed the
embedder's thread (its Python side waits for the lock between model operations). A few
spawned worker processes parse the next few such files while the previous ones are embedded;
the result is the same :class:`ParsedFile` (title, labels, blocks), so the chunks made from it
are the same as in-process parsing.

The workers start only for a run with at least two such files of at least ``POOL_MIN_BYTES``
each (small files parse in milliseconds, cheaper than starting a process), and stop at the
end of the run. A file's problem comes back as its :class:`IngestFailure`.

Each worker is a plain ``multiprocessing`` process with two pipes of its own: the ingesting
process sends it one file at a time and reads the result back on the event loop
(``add_reader``), so no thread of ours ever waits on a worker. A worker that dies (killed; or
a script without an ``if __name__ == "__main__":`` guard, which spawned workers cannot start
from) closes its pipe: the file it was parsing and the rest of the run's files are then parsed
in-process, as without workers. Stopping never waits forever: after a finished run the
workers are told to stop, after a failed or cancelled one they are terminated; either way they
are waited for with a timeout, then killed. (``ProcessPoolExecutor`` was used before: on
Python 3.11, once one of its workers was killed, its manager thread could spin forever in
``shutdown`` or at interpreter exit.)
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import struct
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
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
_STOP_SECONDS = 10.0
"""How long idle workers told to stop, or terminated ones, get to exit before being killed."""
_REAP_SECONDS = 5.0
"""How long to wait for a process that has closed its pipe, or was killed, to be reaped."""
_HEADER = struct.Struct("!Q")
"""A result's frame: its pickle's length, then the pickle."""
_READ_BYTES = 1 << 20
_DIED = "a parser process died (exit code %s)"

ParseOptions = tuple[str | None, str | None, float]
"""(country, doc_type, max_mb): the user's overrides and the size limit."""
_Result = ParsedFile | IngestFailure


def parse_or_fail(path: Path, root: Path | None, options: ParseOptions) -> _Result:
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


def _serve(jobs: Connection, results: Connection) -> None:
    """A worker's life: parse each file it is sent and write back the framed result; end
    when the ingesting process closes its end of ``jobs`` (or is gone)."""
    # Ctrl-C in a terminal reaches the whole process group: the ingesting process stops its
    # workers itself, without a traceback from each of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = results.fileno()
    while True:
        try:
            path, root, options = jobs.recv()
        except (EOFError, OSError):
            return
        result = parse_or_fail(path, root, options)
        try:
            payload = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable value from a loader
            payload = pickle.dumps(IngestFailure(str(path), f"unexpected error: {exc!r}"))
        frame = memoryview(_HEADER.pack(len(payload)) + payload)
        try:
            while frame:
                frame = frame[os.write(out, frame) :]
        except BrokenPipeError:
            return  # the ingesting process no longer wants it


class _Worker:
    """One worker process, the ingesting process's ends of its two pipes, and the file it
    is parsing."""

    def __init__(self, context: SpawnContext, name: str) -> None:
        their_jobs, self.jobs = context.Pipe(duplex=False)
        self.results, their_results = context.Pipe(duplex=False)
        self.process: SpawnProcess = context.Process(
            target=_serve, args=(their_jobs, their_results), name=name, daemon=True
        )
        try:
            self.process.start()
        except BaseException:
            self.jobs.close()
            self.results.close()
            raise
        finally:
            # The child has its own copies: with ours closed, its death is our pipe's EOF.
            their_jobs.close()
            their_results.close()
        self.fd = self.results.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = bytearray()
        self.path: Path | None = None
        """The file it is parsing."""
        self.listening = False
        self.stopping = False

    def frames(self) -> list[bytes]:
        """The whole frames received so far, taken off the buffer."""
        found = []
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            end = _HEADER.size + size
            if len(self.buffer) < end:
                break
            found.append(bytes(self.buffer[_HEADER.size : end]))
            del self.buffer[:end]
        return found

    def stop(self) -> None:
        """Tell it to exit once it has read every file it was sent (its ``recv`` ends)."""
        self.stopping = True
        self.jobs.close()

    def release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close our pipes and reap the process, terminating and then killing it if it has
        not exited (each wait has a timeout)."""
        if self.listening:
            loop.remove_reader(self.fd)
            self.listening = False
        self.jobs.close()
        self.results.close()
        process = self.process
        for end in (process.terminate, process.kill):
            if process.exitcode is not None:
                break
            end()
            process.join(_REAP_SECONDS)
        if process.exitcode is None:
            log.warning("parser process %s did not exit; left to the system", process.pid)
            return
        process.close()


class WorkerParser:
    """Parses the pooled files of a run in worker processes, a few files ahead.

    ``files`` are the run's files in order; :meth:`parse` is then called for each of them in
    that order and returns its result, or None for a file the caller must parse (not pooled,
    or its worker died). :meth:`close` stops the workers (call it in a ``finally``).
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
        self._size = workers or max(1, min(_WORKERS, os.cpu_count() or 1))
        self._ahead = self._size + 1
        """Files sent to workers and not yet taken by :meth:`parse`, at most."""
        self._next = 0  # index in _queue of the next file to send
        self._pending: dict[Path, asyncio.Future[_Result | None]] = {}
        self._workers: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.enabled = len(self._queue) >= 2

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            # spawn: the ingesting process has threads (the model's, the event loop's
            # helpers), which a forked child must not inherit.
            context = multiprocessing.get_context("spawn")
            for n in range(self._size):
                try:
                    worker = _Worker(context, f"proposals-parse-{n}")
                except OSError as exc:
                    log.warning("could not start a parser process (%s); parsing in-process", exc)
                    self._give_up()
                    break
                self._workers.append(worker)
                self._loop.add_reader(worker.fd, self._readable, worker)
                worker.listening = True
        return self._loop

    def _fill(self) -> None:
        """Send the next files to idle workers, keeping at most ``_ahead`` files pending."""
        if not self.enabled:
            return
        loop = self._start()
        if not self.enabled:  # a worker could not start
            return
        for worker in self._workers:
            if len(self._pending) >= self._ahead or self._next >= len(self._queue):
                return
            if worker.path is not None or worker.stopping or not worker.listening:
                continue
            path, root = self._queue[self._next]
            try:
                worker.jobs.send((path, root, self._options))
            except OSError:  # it died before reading: its pipe's EOF says so
                continue
            self._next += 1
            worker.path = path
            self._pending[path] = loop.create_future()

    def _readable(self, worker: _Worker) -> None:
        """The event loop's callback for a worker's result pipe."""
        try:
            data = os.read(worker.fd, _READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended(worker)
            return
        worker.buffer += data
        for frame in worker.frames():
            path, worker.path = worker.path, None
            try:
                result: _Result | None = pickle.loads(frame)
            except Exception as exc:
                log.warning("unreadable result from a parser process for %s: %r", path, exc)
                result = None  # the caller parses it
            self._settle(path, result)
        if self.enabled:
            self._fill()
        elif worker.path is None and not worker.stopping:
            worker.stop()

    def _ended(self, worker: _Worker) -> None:
        """A worker's pipe reached EOF: it has exited."""
        assert self._loop is not None
        self._loop.remove_reader(worker.fd)
        worker.listening = False
        worker.process.join(_REAP_SECONDS)
        path, worker.path = worker.path, None
        if not worker.stopping:
            code = worker.process.exitcode
            if path is None:
                log.warning(_DIED + "; files not yet sent to a worker are parsed in-process", code)
            else:
                log.warning(
                    _DIED + " while parsing %s; that file and those not yet sent to a worker are"
                    " parsed in-process",
                    code,
                    path,
                )
            self._give_up()
        self._settle(path, None)

    def _settle(self, path: Path | None, result: _Result | None) -> None:
        future = self._pending.get(path) if path is not None else None
        if future is not None and not future.done():  # not given up by a cancelled parse
            future.set_result(result)

    def _give_up(self) -> None:
        """A worker died or could not start: the files not yet sent are parsed in-process,
        as without workers; the others finish the file they are parsing, then stop."""
        self.enabled = False
        for worker in self._workers:
            if worker.path is None and not worker.stopping and worker.listening:
                worker.stop()

    async def parse(self, path: Path) -> ParsedFile | IngestFailure | None:
        """The result for ``path`` if a worker parses it (waiting for it), else None."""
        self._fill()
        future = self._pending.get(path)
        if future is None:
            return None
        try:
            result = await future
        finally:
            del self._pending[path]
        self._fill()
        return result

    def busy(self) -> int:
        """Workers parsing a file now: cores the run's parsing uses. Called from the
        embedder's thread: it reads a copy of the list."""
        return sum(w.path is not None for w in list(self._workers))

    async def close(self, *, finished: bool) -> None:
        """Stop the workers: after a finished run they are told to stop, otherwise they are
        terminated (their files are no longer wanted); then they are waited for, each wait
        with a timeout, and killed if they have not exited."""
        self.enabled = False
        workers, self._workers = self._workers, []
        if not workers:
            return
        loop = self._loop
        assert loop is not None
        for worker in workers:
            if worker.listening:
                loop.remove_reader(worker.fd)
                worker.listening = False
            if finished:
                worker.stop()
            elif worker.process.exitcode is None:
                worker.process.terminate()
        try:
            await _exited(loop, [w.process for w in workers], _STOP_SECONDS)
        finally:
            for worker in workers:
                worker.release(loop)


async def _exited(
    loop: asyncio.AbstractEventLoop, processes: list[SpawnProcess], seconds: float
) -> None:
    """Wait until every process has exited (its sentinel is readable), at most ``seconds``."""
    waiting = {p.sentinel for p in processes if p.exitcode is None}
    if not waiting:
        return
    all_gone: asyncio.Future[None] = loop.create_future()

    def gone(fd: int) -> None:
        loop.remove_reader(fd)
        waiting.discard(fd)
        if not waiting and not all_gone.done():
            all_gone.set_result(None)

    for fd in waiting:
        loop.add_reader(fd, gone, fd)
    try:
        await asyncio.wait([all_gone], timeout=seconds)
    finally:
        for fd in waiting:
            loop.remove_reader(fd)
