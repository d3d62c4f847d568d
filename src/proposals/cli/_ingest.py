"""``proposals ingest``, ``proposals search`` and ``proposals docs``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import InputError
from ..vocabulary import DOC_TYPES

# The heavy modules (database, embedder, loaders) are imported by each command when it runs.

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ingest, search and docs sub-commands."""
    p = subparsers.add_parser(
        "ingest",
        help="load files and folders into the corpus",
        description="Load, split, embed and store documents. Unchanged files are skipped. "
        "Country and type come from these flags, else the file's front matter, else the "
        "folder convention <root>/<CC>/<doc_type>/file (or <root>/global/...).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--country", help="ISO 3166-1 alpha-2 code for every file, or 'global'")
    p.add_argument(
        "--type", dest="doc_type", choices=DOC_TYPES, help="document type for every file"
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="remove stored documents under PATH whose file no longer exists",
    )
    p.add_argument(
        "--reset-index",
        action="store_true",
        help="delete the whole index first (needed to switch embedding models)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run on a Ray cluster (needs the 'ray' extra): 'auto' joins this machine's cluster "
        "or starts a local one; else HOST:6379 or ray://HOST:10001. See docs/scale.md",
    )
    p.add_argument(
        "--actors",
        type=int,
        default=1,
        metavar="N",
        help="with --ray: embedding actors, each loading the model once (default 1)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        metavar="N",
        help="with --ray: chunks per embedding call of an actor (default 64)",
    )
    p.add_argument(
        "--server", metavar="URL", help="upload to a proposals server (key from PROPOSALS_API_KEY)"
    )
    p.set_defaults(handler=_ingest)

    s = subparsers.add_parser(
        "search",
        help="search the corpus (hybrid: vectors + full text)",
        description="Hybrid search of the ingested corpus: vector similarity and full text, "
        "fused by rank. Each hit is printed with its citation (title, path, page or section, "
        "chunk id). --country gives that country's documents plus the global ones.",
    )
    s.add_argument("query")
    s.add_argument("--country", help="this country's documents plus the global ones")
    s.add_argument(
        "--type",
        dest="doc_types",
        action="append",
        choices=DOC_TYPES,
        help="document type (repeatable)",
    )
    s.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    s.add_argument("--mode", choices=("hybrid", "vector", "text"), default="hybrid")
    s.add_argument("--json", action="store_true", help="print hits as JSON")
    s.set_defaults(handler=_search)

    d = subparsers.add_parser(
        "docs",
        help="list ingested documents with their chunk counts",
        description="The ingested documents: id, country, type, chunk count, title and path, "
        "and the embedding model of the index.",
    )
    d.add_argument("--json", action="store_true", help="print as JSON")
    d.set_defaults(handler=_docs)


async def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    if args.ray is not None and args.server:
        raise InputError("--ray and --server exclude each other: a server ingests on its own")
    if args.actors < 1 or args.batch_size < 1:
        raise InputError("--actors and --batch-size must be at least 1")
    if args.server:
        from ._remote import ingest_remote

        return await ingest_remote(args, settings)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..db import Database
    from ..embeddings import open_embedder
    from ..ingest import SUPPORTED_SUFFIXES, IngestProgress, check_ray_address, ingest, source_files

    if args.ray is not None:
        check_ray_address(args.ray)  # at once, before the database is opened

    files, missing, ignored = await asyncio.to_thread(source_files, args.paths)
    if not files and not missing and not args.prune and not args.reset_index:
        where = ", ".join(args.paths)
        if not ignored:
            raise InputError(f"nothing to ingest: no files found in {where}")
        listed = "; ".join(f"{Path(i.path).name} ({i.reason})" for i in ignored[:10])
        more = f"; and {len(ignored) - 10} more" if len(ignored) > 10 else ""
        raise InputError(
            f"nothing to ingest in {where}: {len(ignored)} file(s) skipped: {listed}{more}. "
            f"Supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )

    console = Console(stderr=True)
    show_bar = not args.json and console.is_terminal
    bar = Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=not show_bar,
        transient=True,
    )
    task = bar.add_task("", total=None)

    seen = {"done": 0, "total": len(files)}

    def on_progress(event: IngestProgress) -> None:
        seen["done"] = event.done
        name = event.path.rsplit("/", 1)[-1]
        storing = event.status == "storing"  # a slice of a large file, not a finished file
        described = (
            f"storing {name}: {event.chunks} chunks" if storing else f"{event.status} {name}"
        )
        bar.update(task, completed=event.done, total=event.total, description=described)
        if show_bar or args.json:
            return
        # Not a terminal (a log, a pipe, CI): one plain line per file, and one per stored
        # slice of a large file.
        if storing:
            line = f"ingest [{event.done + 1}/{event.total}] storing {event.path}: "
            line += f"{event.chunks} chunks so far"
        else:
            chunks = f", {event.chunks} chunks" if event.chunks else ""
            line = f"ingest [{event.done}/{event.total}] {event.status} {event.path}{chunks}"
        print(line, file=sys.stderr, flush=True)

    try:
        async with await Database.open(settings) as db:
            with bar:
                common: dict[str, Any] = {
                    "database": db,
                    "country": args.country,
                    "doc_type": args.doc_type,
                    "prune": args.prune,
                    "reset_index": args.reset_index,
                    "progress": on_progress,
                }
                if args.ray is None:
                    async with open_embedder(settings, database=db) as embedder:
                        report = await ingest(
                            args.paths,
                            embedder=embedder,
                            chunk_tokens=settings.chunk_tokens,
                            chunk_overlap=settings.chunk_overlap,
                            max_file_mb=settings.max_file_mb,
                            **common,
                        )
                else:
                    report = await _ingest_on_ray(args, settings, common)
    except asyncio.CancelledError:
        # Each file is stored in one transaction: the ones done are complete, the rest not begun.
        print(
            f"ingest interrupted after {seen['done']} of {seen['total']} files; run the same "
            "command again to continue (files already stored are skipped as unchanged)",
            file=sys.stderr,
            flush=True,
        )
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        rate = report.chunks_written / report.seconds if report.seconds else 0.0
        print(
            f"added {len(report.added)}, updated {len(report.updated)}, relabelled "
            f"{len(report.relabelled)}, unchanged {len(report.unchanged)}, removed "
            f"{len(report.removed)}, failed {len(report.failed)}, ignored {len(report.ignored)}; "
            f"{report.chunks_written} chunks in {report.seconds:.1f}s ({rate:.1f} chunks/s)"
        )
        for failure in report.failed:
            print(f"  FAILED {failure.path}: {failure.reason}", file=sys.stderr)
    return 0 if report.ok else 1


async def _ingest_on_ray(
    args: argparse.Namespace, settings: Settings, common: dict[str, Any]
) -> Any:
    """The same ingest with the work on a Ray cluster (the actors build the embedder)."""
    import logging

    from ..ingest import RayOptions, ingest_on_ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our progress, not Ray's
    options = RayOptions(address=args.ray, actors=args.actors, batch_size=args.batch_size)
    return await ingest_on_ray(args.paths, settings=settings, options=options, **common)


async def _search(args: argparse.Namespace, settings: Settings) -> int:
    from ..db import Database
    from ..embeddings import embedder_from_settings
    from ..store import Store

    async with await Database.open(settings) as db:
        store = Store(db, embedder_from_settings(settings))
        hits = await store.search(
            args.query, args.k, country=args.country, doc_types=args.doc_types, mode=args.mode
        )
    if args.json:
        print(json.dumps([h.model_dump() for h in hits], indent=2))
        return 0
    if not hits:
        print("no results")
    for n, hit in enumerate(hits, start=1):
        text = " ".join(hit.text.split())
        print(f"{n:>2}. {hit.citation.describe()}  score={hit.score:.4f}")
        print(f"    {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0


async def _docs(args: argparse.Namespace, settings: Settings) -> int:
    from ..db import Database
    from ..store import Store

    async with await Database.open(settings) as db:
        store = Store(db)
        docs = await store.list_documents()
        info = await store.index_info()
    if args.json:
        print(
            json.dumps(
                {
                    "embedding_model": info.embedding_model if info else None,
                    "documents": [d.model_dump(mode="json") for d in docs],
                },
                indent=2,
            )
        )
        return 0
    if info:
        print(f"index: {info.embedding_model} ({info.embedding_dim} dims)")
    for d in docs:
        print(
            f"{d.id:>5}  {d.country or '--'}  {d.doc_type:<19} {d.chunks:>4} chunks  "
            f"{d.title}  {d.path}"
        )
    print(f"{len(docs)} documents, {sum(d.chunks for d in docs)} chunks")
    return 0
