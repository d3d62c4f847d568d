"""Where a document's country and type come from: flags > file metadata > folder > defaults.

Folder convention (documented in examples/corpus/README.md)::

    <root>/<CC>/<doc_type>/<file>      e.g. corpus/AR/official/bcra-savings-rules.md
    <root>/global/<doc_type>/<file>    no country: the document applies everywhere

``<CC>`` is an ISO 3166-1 alpha-2 code written in upper case (``AR``, ``BR``); upper case is
required so ordinary lower-case folder names such as ``co`` or ``it`` are never taken for a
country. ``global`` (any case) means no country. ``<doc_type>`` is one of ``official``,
``technical_report``, ``product_description``, ``other`` or a plural/dashed alias
(``technical-reports``, ``products``...). Only the folders below the path given to ``ingest``
(and that path's own name) are read; for a single file, its two nearest folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IngestError, UserError
from ..vocabulary import COUNTRY_CODES, doc_type_alias, normalize_country, normalize_doc_type

__all__ = ["ResolvedMeta", "folder_hints", "resolve_meta"]

_UPPER_CC = re.compile(r"^[A-Z]{2}$")
_UNSET: Any = object()


@dataclass(slots=True, frozen=True)
class ResolvedMeta:
    title: str
    country: str | None
    doc_type: str


def folder_hints(path: Path, root: Path | None) -> tuple[Any, str | None]:
    """(country or ``_UNSET``, doc_type or None) read from the folders above ``path``."""
    if root is not None and root != path:
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = Path(path.name)
        folders = [root.name, *rel.parts[:-1]]
    else:
        folders = [p.name for p in path.parents][:2][::-1]
    country: Any = _UNSET
    doc_type: str | None = None
    for name in reversed(folders):  # the nearest folder wins
        if country is _UNSET:
            if _UPPER_CC.match(name) and name in COUNTRY_CODES:
                country = name
            elif name.lower() in ("global", "_global"):
                country = None
        if doc_type is None:
            doc_type = doc_type_alias(name)
    return country, doc_type


# Keys of a file's own metadata that give its document type, first found wins.
DOC_TYPE_KEYS = ("doc_type", "type", "doc-type", "document_type", "document-type")


def _file_doc_type(file_meta: dict[str, Any]) -> str | None:
    for key in DOC_TYPE_KEYS:
        if file_meta.get(key) not in (None, ""):
            try:
                return normalize_doc_type(file_meta[key])
            except UserError as exc:
                raise UserError(f"metadata key {key!r}: {exc}") from exc
    return None


def resolve_meta(
    path: Path,
    root: Path | None,
    file_meta: dict[str, Any],
    loaded_title: str | None,
    *,
    country: Any = _UNSET,
    doc_type: str | None = None,
) -> ResolvedMeta:
    """Apply the precedence flags > file metadata > folder > defaults, validating each value."""
    folder_country, folder_type = folder_hints(path, root)
    try:
        if country is not _UNSET:
            final_country = normalize_country(country)
        elif "country" in file_meta:
            final_country = normalize_country(file_meta["country"])
        elif folder_country is not _UNSET:
            final_country = folder_country
        else:
            final_country = None
        final_type = (
            normalize_doc_type(doc_type) or _file_doc_type(file_meta) or folder_type or "other"
        )
    except UserError as exc:
        raise IngestError(str(path), str(exc)) from exc
    title = str(file_meta.get("title") or loaded_title or "").strip()
    if not title:
        title = path.stem.replace("_", " ").replace("-", " ").strip() or path.name
    return ResolvedMeta(title=title[:500], country=final_country, doc_type=final_type)


UNSET = _UNSET
