"""Ingest on a Ray cluster: files read, parsed and split as Ray tasks, chunks embedded by a pool
of actors (each loads the embedder once), documents written by this process.

The stages are the ones :func:`proposals.ingest.ingest` runs (``prepare_file``,
``embedding_text``, ``DocumentSink``), so results are the same: same chunks, same idempotence by
content hash, the same report and progress ticks, broken files named with their reason.

Rows flowing through Ray Data are one per chunk (one per file that needs no embedding, or that
failed), with plain columns only: ``key`` (the file), ``i`` / ``n`` (chunk index and count;
``n`` is 0 for a file with nothing to embed and -1 for a failed one), ``text`` (what the
embedder sees), ``payload`` (the pickled :class:`PreparedFile` on chunk 0, or the
:class:`IngestFailure`), and after embedding ``vector`` (float32 bytes) and ``error``. The
driver gathers a document's rows as they stream in, in any order, and writes it once all of
its chunks have their vectors; only documents in flight are held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import DEFAULT_TENANT, Settings
from ..db import Database
from ..embeddings import Embedder, embedder_from_settings, open_embedder
from ..errors import ConfigError, IngestError, ProviderError
from ..vocabulary import normalize_country, normalize_doc_type
from ._model import IngestFailure, IngestReport
from ._pipeline import source_files
from ._stages import DocumentSink, PreparedFile, ProgressCallback, embedding_text, prepare_file

__all__ = ["RayOptions", "check_ray_address", "ingest_on_ray"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Passed from this process to the Ray workers it starts or joins: offline model loading and
# quiet tokenizers, as the CLI sets them here.
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")


@dataclass(slots=True)
class RayOptions:
    """How the work is laid out on the cluster."""

    address: str = "auto"
    """``auto``: the cluster this machine belongs to (``RAY_ADDRESS``, or one started with
    ``ray start``), else a local one for this call; or a cluster's address
    (``HOST:6379`` from a node of it, ``ray://HOST:10001`` from outside)."""
    actors: int = 1
    """Embedding actors (each holds one copy of the model)."""
    batch_size: int = 64
    """Chunks per embedding call of an actor."""
    actor_cpus: float | None = None
    """CPUs Ray reserves for each embedding actor; None: 1, or less so that every actor and
    one read task fit in the cluster's CPUs at once."""
    task_cpus: float = 0.5
    """CPUs Ray reserves for each read/parse/split task."""
    connect_timeout_s: float = 5.0
    """How long the cluster's address may take to accept a connection before the ingest
    gives up (Ray itself would wait a minute or more)."""
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``ray.init`` arguments when this call starts or joins the cluster."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(
            "ingest on Ray needs the 'ray' extra: pip install 'proposals[ray]'"
        ) from exc
    return ray


def _connect(ray: Any, options: RayOptions) -> bool:
    """Join (or start) the cluster unless this process already has; True if it did here."""
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": env},
        **options.init_kwargs,
    }
    address = None if options.address == "auto" else options.address
    check_ray_address(options.address, timeout_s=options.connect_timeout_s)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = options.address if address else "this machine"
        raise ConfigError(f"cannot join the Ray cluster at {where}: {exc}") from exc
    return True


def check_ray_address(address: str, *, timeout_s: float = 5.0) -> None:
    """Raise :class:`ConfigError` (one line naming the address) unless a TCP connection opens
    within ``timeout_s`` to the Ray cluster at ``address``: ``HOST:PORT`` (its GCS) or
    ``ray://HOST:PORT`` (its Ray Client server); ``auto`` checks ``RAY_ADDRESS`` when set.
    Ray itself waits a minute and more for a cluster that is not there."""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    if not target or target in ("auto", "local"):
        return
    where = target.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    host = host.strip("[]")  # an IPv6 literal
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"Ray address {target!r} is not HOST:PORT or ray://HOST:PORT (or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or ("timed out" if isinstance(exc, TimeoutError) else str(exc))
        raise ConfigError(
            f"cannot reach the Ray cluster at {target}: {str(reason).lower()} "
            "(is 'ray start --head' running there? see docs/scale.md)"
        ) from exc


def _actor_cpus(ray: Any, options: RayOptions) -> float:
    """CPUs per embedding actor such that all actors and one read task can run at once (else
    Ray Data waits forever for a CPU to read with)."""
    total = float(ray.cluster_resources().get("CPU", 0.0))
    room = total - options.task_cpus
    actor = (
        options.actor_cpus if options.actor_cpus is not None else min(1.0, room / options.actors)
    )
    if actor <= 0 or options.actors * actor > room + 1e-9:
        raise ConfigError(
            f"the Ray cluster has {total:g} CPUs: {options.actors} embedding actor(s) of "
            f"{max(actor, 0):g} CPU plus a read task of {options.task_cpus:g} CPU do not fit; "
            "use fewer actors or add nodes"
        )
    return actor


def _prepare_rows(row: dict[str, Any], *, options: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray task: one file to rows (one per chunk to embed, else one for the whole file)."""
    path = Path(row["path"])
    root = Path(row["root"]) if row["root"] else None
    stored = pickle.loads(row["stored"]) if row["stored"] else None
    try:
        item = prepare_file(path, root, stored=stored, **options)
    except IngestError as exc:
        return [_row(str(path), -1, 0, "", IngestFailure(str(path), exc.reason))]
    except Exception as exc:  # a loader bug must not sink the other files
        failure = IngestFailure(str(path), f"unexpected error: {exc!r}")
        return [_row(str(path), -1, 0, "", failure)]
    chunks = item.chunks or []
    if not chunks:
        return [_row(item.key, 0, 0, "", item)]
    title = item.meta.title
    return [
        _row(item.key, len(chunks), i, embedding_text(title, c), item if i == 0 else None)
        for i, c in enumerate(chunks)
    ]


def _row(key: str, n: int, i: int, text: str, payload: object) -> dict[str, Any]:
    blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL) if payload else b""
    return {"key": key, "n": n, "i": i, "text": text, "payload": blob}


EmbedderOpener = Callable[[], contextlib.AbstractAsyncContextManager[Embedder]]
"""Opens an embedder for an actor's life (``open_embedder`` with the settings, by default)."""


def _opened(factory: Callable[[], Embedder]) -> contextlib.AbstractAsyncContextManager[Embedder]:
    """An embedder from a plain factory, as an opener yields it."""
    return contextlib.nullcontext(factory())


class _EmbedActor:
    """A Ray actor: the embedder loaded once, batches of chunk rows in, vectors out.

    Its event loop runs in a thread of its own for the actor's life: an HTTP client is bound
    to the loop it first ran on, and a shared budget's lease is renewed by a heartbeat task
    that must keep running between batches (the actor dies: the lease expires).
    """

    def __init__(self, opener: EmbedderOpener) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()
        self.embedder: Embedder = self._wait(self.stack.enter_async_context(opener()))

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __del__(self) -> None:
        """Ray Data calls this when it shuts the pool down gracefully: the embedder is closed
        (a shared budget's lease deleted, its share free at once) and the loop stopped. An
        actor that is killed or crashes loses its lease when the lease expires instead."""
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.stack.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)

    def __call__(self, batch: Any) -> Any:
        """``batch`` is a ``pyarrow.Table`` of rows; returns it with ``vector`` and ``error``
        columns (and ``text`` emptied: nothing downstream needs it)."""
        import pyarrow as pa

        counts = batch.column("n").to_pylist()
        texts = batch.column("text").to_pylist()
        wanted = [j for j, n in enumerate(counts) if n > 0]
        vectors = [b""] * len(counts)
        errors = [""] * len(counts)
        if wanted:
            try:
                matrix = self._wait(self.embedder.embed([texts[j] for j in wanted]))
            except ProviderError as exc:
                for j in wanted:
                    errors[j] = f"embedding failed: {exc}"
            else:
                for j, vector in zip(wanted, matrix, strict=True):
                    vectors[j] = np.asarray(vector, dtype=np.float32).tobytes()
        batch = batch.drop_columns(["text"])
        batch = batch.append_column("vector", pa.array(vectors, type=pa.binary()))
        return batch.append_column("error", pa.array(errors, type=pa.string()))


@dataclass(slots=True)
class _Pending:
    n: int
    item: PreparedFile | None = None
    vectors: list[bytes] = field(default_factory=list)
    got: int = 0
    error: str = ""


async def ingest_on_ray(
    paths: Sequence[str | PathLike[str]],
    *,
    settings: Settings,
    options: RayOptions | None = None,
    database: Database | None = None,
    embedder_factory: Callable[[], Embedder] | None = None,
    country: str | None = None,
    doc_type: str | None = None,
    prune: bool = False,
    reset_index: bool = False,
    progress: ProgressCallback | None = None,
    tenant: str = DEFAULT_TENANT,
) -> IngestReport:
    """:func:`proposals.ingest.ingest` with the work spread over a Ray cluster.

    Reading, parsing and splitting run as Ray tasks; embedding runs in ``options.actors``
    actors, each built once with ``embedder_factory`` (default: the settings' embedder, in the
    shared provider budget when that is on, one lease per actor; a factory must be
    picklable); this process writes each document in one transaction. Split sizes and the
    file size limit come from ``settings``. Requires the ``ray`` extra.
    """
    ray = _import_ray()
    options = options or RayOptions()
    if options.actors < 1 or options.batch_size < 1:
        raise ConfigError("Ray ingest needs at least 1 actor and a batch size of at least 1")
    if country is not None:
        normalize_country(country)
    normalize_doc_type(doc_type)
    name = (embedder_factory or functools.partial(embedder_from_settings, settings))().name
    started_here = _connect(ray, options)
    try:
        options = dataclasses.replace(options, actor_cpus=_actor_cpus(ray, options))
        if database is not None:
            return await _run(
                ray, paths, settings, options, database, embedder_factory, name, country,
                doc_type, prune, reset_index, progress, tenant,
            )  # fmt: skip
        async with await Database.open(settings) as db:
            return await _run(
                ray, paths, settings, options, db, embedder_factory, name, country,
                doc_type, prune, reset_index, progress, tenant,
            )  # fmt: skip
    finally:
        if started_here:
            ray.shutdown()


def _opener(
    settings: Settings, database: Database, factory: Callable[[], Embedder] | None
) -> EmbedderOpener:
    """What each actor opens its embedder with: ``factory``'s embedder, or the settings' one
    (in the shared provider budget when that is on: each actor then holds a lease of its own,
    on this process's database, with a pool of its own)."""
    if factory is not None:
        return functools.partial(_opened, factory)
    actor_settings = settings.model_copy(update={"database_url": database.url, "db_pool_max": 2})
    return functools.partial(open_embedder, actor_settings)


async def _run(
    ray: Any,
    paths: Sequence[str | PathLike[str]],
    settings: Settings,
    options: RayOptions,
    database: Database,
    factory: Callable[[], Embedder] | None,
    model_name: str,
    country: str | None,
    doc_type: str | None,
    prune: bool,
    reset_index: bool,
    progress: ProgressCallback | None,
    tenant: str,
) -> IngestReport:
    started = time.perf_counter()
    sink = DocumentSink(database, model_name, tenant=tenant, progress=progress)
    report = sink.report
    files, failed, ignored = await asyncio.to_thread(source_files, paths)
    report.failed.extend(failed)
    report.ignored.extend(ignored)
    stored = await sink.open(len(files), reset_index=reset_index)
    if files:
        stage_options = {
            "embedding_model": model_name,
            "chunk_tokens": settings.chunk_tokens,
            "overlap": settings.chunk_overlap,
            "max_mb": settings.max_file_mb,
            "country": country,
            "doc_type": doc_type,
        }
        items = []
        for path, root in files:
            old = stored.get(path.as_posix())
            items.append(
                {
                    "path": str(path),
                    "root": str(root) if root else "",
                    "stored": pickle.dumps(old) if old else b"",
                }
            )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # progress is ours: one tick per document
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 1000))
        ds = ds.flat_map(
            _prepare_rows, fn_kwargs={"options": stage_options}, num_cpus=options.task_cpus
        )
        ds = ds.map_batches(
            _EmbedActor,
            fn_constructor_args=(_opener(settings, database, factory),),
            batch_size=options.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=options.actors),
            num_cpus=options.actor_cpus,
        )
        await _drain(ds, sink)
    await sink.close(paths if prune else ())
    report.seconds = time.perf_counter() - started
    return report


async def _drain(ds: Any, sink: DocumentSink) -> None:
    """Gather rows into documents as they stream from the cluster, and write each one."""
    batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    pending: dict[str, _Pending] = {}
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        for row in batch.to_pylist():
            key, n = row["key"], row["n"]
            if n < 0:
                sink.fail(pickle.loads(row["payload"]))
                continue
            if n == 0:
                await sink.settle(pickle.loads(row["payload"]))
                continue
            doc = pending.setdefault(key, _Pending(n, vectors=[b""] * n))
            if row["i"] == 0:
                doc.item = pickle.loads(row["payload"])
            doc.vectors[row["i"]] = row["vector"]
            doc.error = doc.error or row["error"]
            doc.got += 1
            if doc.got == doc.n:
                del pending[key]
                await _finish(sink, doc)


async def _finish(sink: DocumentSink, doc: _Pending) -> None:
    item = doc.item
    assert item is not None
    if doc.error:
        sink.fail(IngestFailure(item.key, doc.error))
        return
    matrix = np.stack([np.frombuffer(v, dtype=np.float32) for v in doc.vectors])
    await sink.write(item, matrix)
