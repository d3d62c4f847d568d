"""Labelled questions for retrieval evaluation, read from CSV or JSON.

Each question says what counts as relevant, in any mix of three ways: chunk ids, file-name
globs (``*AAPL*`` matches any stored document whose file name or path matches) and section
names (a chunk's heading path, or one heading of it). Given both files and sections, a
section counts only inside those files (files say where, sections which part). Optional filters (country, document
types) are passed to the search as they are. Column and key names are case-insensitive, and
the SEC 10-Q set's own columns (``Question``, ``Source Docs``, ``Question Type``) are
understood.

JSON: a list of objects, or ``{"questions": [...]}``::

    {"id": "q1", "question": "...", "type": "paraphrase", "country": "AR",
     "doc_types": ["official"], "relevant": {"files": ["*AR/official/*"], "sections": [],
     "chunks": []}}

(``files`` / ``sections`` / ``chunks`` may also sit at the top level of the object.)
CSV: columns ``question``, ``type``, ``country``, ``doc_types``, ``files``, ``sections``,
``chunks``; several values in one cell are separated by ``;``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError

__all__ = ["Question", "load_questions", "parse_questions"]

_ALIASES = {
    "question": "question",
    "query": "question",
    "id": "id",
    "type": "type",
    "question type": "type",
    "question_type": "type",
    "country": "country",
    "doc_types": "doc_types",
    "doc_type": "doc_types",
    "types": "doc_types",
    "files": "files",
    "file": "files",
    "source docs": "files",
    "source_docs": "files",
    "globs": "files",
    "sections": "sections",
    "section": "sections",
    "chunks": "chunks",
    "chunk_ids": "chunks",
    "chunk ids": "chunks",
}
_SPLIT = re.compile(r"\s*[;\n]\s*")


class Question(BaseModel):
    """One labelled question and what counts as a relevant answer to it."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    type: str = "all"
    """Question type, for the per-type breakdown."""
    country: str | None = None
    doc_types: tuple[str, ...] = ()
    chunks: tuple[int, ...] = ()
    """Relevant chunk ids."""
    files: tuple[str, ...] = ()
    """File-name globs (``fnmatch``) of relevant documents, matched against the stored path
    and the bare file name."""
    sections: tuple[str, ...] = Field(default=())
    """Relevant section names: a chunk's whole heading path or one heading in it."""


def load_questions(path: str | Path) -> list[Question]:
    """Read a question file (``.csv`` or ``.json``; other names: sniffed from the content)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read questions file {file}: {exc.strerror or exc}") from exc
    kind = file.suffix.lower().lstrip(".")
    if kind not in ("csv", "json"):
        kind = "json" if text.lstrip().startswith(("[", "{")) else "csv"
    return parse_questions(text, kind, source=str(file))


def parse_questions(text: str, kind: str, *, source: str = "questions") -> list[Question]:
    """Parse questions from ``text`` in ``kind`` (``csv`` or ``json``) format."""
    rows: list[Mapping[str, Any]]
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            data = data.get("questions")
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise InputError(f"{source}: expected a list of question objects")
        rows = data
    elif kind == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        raise InputError(f"{source}: unknown questions format {kind!r} (csv or json)")
    questions = [_question(row, n, source) for n, row in enumerate(rows, start=1)]
    if not questions:
        raise InputError(f"{source}: no questions")
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise InputError(f"{source}: question id {q.id!r} appears twice")
        seen.add(q.id)
    return questions


def _question(row: Mapping[str, Any], n: int, source: str) -> Question:
    fields: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue
        name = _ALIASES.get(str(key).strip().lower())
        if name is not None and value not in (None, ""):
            fields[name] = value
    relevant = row.get("relevant")
    if isinstance(relevant, Mapping):
        for key, value in relevant.items():
            name = _ALIASES.get(str(key).strip().lower())
            if name in ("files", "sections", "chunks"):
                fields[name] = value
    question = str(fields.get("question") or "").strip()
    if not question:
        raise InputError(f"{source}: question {n} has no question text")
    try:
        chunks = tuple(int(c) for c in _values(fields.get("chunks")))
    except ValueError as exc:
        raise InputError(f"{source}: question {n} has a chunk id that is not a number") from exc
    files = tuple(_values(fields.get("files")))
    sections = tuple(_values(fields.get("sections")))
    if not (chunks or files or sections):
        raise InputError(
            f"{source}: question {n} ({question[:60]!r}) names nothing relevant "
            "(give chunks, files or sections)"
        )
    return Question(
        id=str(fields.get("id") or n),
        question=question,
        type=str(fields.get("type") or "all").strip(),
        country=str(fields["country"]).strip() if fields.get("country") else None,
        doc_types=tuple(_values(fields.get("doc_types"))),
        chunks=chunks,
        files=files,
        sections=sections,
    )


def _values(value: Any) -> Iterable[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v for v in _SPLIT.split(str(value).strip()) if v]
