"""``proposals eval retrieval QUESTIONS_FILE``: retrieval quality on labelled questions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import Settings
from ..db import Database
from ..embeddings import embedder_from_settings
from ..errors import InputError
from ..evaluate import MODES, evaluate_retrieval, load_questions
from ..store import Store

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``eval`` command and its ``retrieval`` sub-command."""
    e = subparsers.add_parser(
        "eval",
        help="measure quality on labelled data",
        description="Measure quality on labelled data: 'eval retrieval QUESTIONS_FILE' asks "
        "labelled questions in each search mode and prints recall, precision, MRR and nDCG.",
    )
    what = e.add_subparsers(dest="what", metavar="WHAT")
    what.required = True
    r = what.add_parser(
        "retrieval",
        help="recall@k, precision@k, MRR and nDCG of search, per mode and question type",
        description="Ask every question of QUESTIONS_FILE (CSV or JSON; relevance as chunk ids, "
        "file-name globs or section names) in each search mode against the ingested corpus.",
    )
    r.add_argument("questions", metavar="QUESTIONS_FILE")
    r.add_argument(
        "-k",
        default="3,10",
        help="cut-offs, comma-separated (default 3,10; MRR and nDCG at the largest)",
    )
    r.add_argument(
        "--mode",
        dest="modes",
        default=",".join(MODES),
        help=f"search modes, comma-separated (default {','.join(MODES)})",
    )
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument(
        "--per-question", action="store_true", help="with --json: include every question's hits"
    )
    r.set_defaults(handler=_retrieval)


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InputError(f"-k takes comma-separated whole numbers, not {text!r}") from exc
    if not values or min(values) < 1:
        raise InputError("-k values must be at least 1")
    return values


async def _retrieval(args: argparse.Namespace, settings: Settings) -> int:
    ks = _ints(args.k)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise InputError(f"unknown search mode(s) {unknown}; choose from {', '.join(MODES)}")
    questions = load_questions(args.questions)
    async with await Database.open(settings) as db:
        store = Store(db, embedder_from_settings(settings) if modes != ["text"] else None)
        report = await evaluate_retrieval(store, questions, modes=modes, k=ks)
    if args.json:
        data = report.model_dump(exclude=None if args.per_question else {"questions"})
        print(json.dumps(data, indent=2))
    else:
        print(f"{len(questions)} questions, {report.chunks} chunks")
        print(report.table())
    return 0
