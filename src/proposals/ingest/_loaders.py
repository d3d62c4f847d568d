"""One loader per file format. Each turns bytes into a title, metadata and ordered blocks.

Loaders are synchronous (the pipeline runs them in a thread) and raise ``IngestError`` with a
human reason for any file they cannot read; the third-party error is chained.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import IngestError
from ._model import Block, LoadedDocument
from ._textstream import decode_text, enter_heading, load_text_bytes

__all__ = ["SUPPORTED_SUFFIXES", "decode_text", "load_bytes", "load_file"]

_BLANK_SPLIT = re.compile(r"\n\s*\n")
_PDF_MAX_ARRAY = 1_000_000


def load_file(path: Path) -> LoadedDocument:
    """Load ``path`` with the loader for its suffix. Raises ``IngestError``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from exc
    return load_bytes(data, path)


def load_bytes(data: bytes, path: Path) -> LoadedDocument:
    """Load ``data`` as if read from ``path`` (the suffix picks the loader)."""
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        raise IngestError(str(path), f"unsupported file type {suffix or '(no extension)'!r}")
    if not data.strip():
        raise IngestError(str(path), "empty file")
    doc = loader(data, path)
    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    if not any(not b.heading for b in doc.blocks):
        raise IngestError(str(path), "no text found in the file")
    return doc


# --- plain text & markdown ---------------------------------------------------------------------


def _paragraph_blocks(text: str, section: str | None, page: int | None = None) -> list[Block]:
    return [
        Block(p.strip(), section=section, page=page) for p in _BLANK_SPLIT.split(text) if p.strip()
    ]


def _load_text(data: bytes, path: Path) -> LoadedDocument:
    doc = load_text_bytes(data, path)
    return LoadedDocument(title=doc.title, blocks=list(doc.blocks), metadata=doc.metadata)


# --- HTML ------------------------------------------------------------------------------------

_HTML_BLOCKS = ("p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption")
_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def _load_html(data: bytes, path: Path) -> LoadedDocument:
    from bs4 import BeautifulSoup

    try:
        soup = BeautifulSoup(data, "html.parser")
    except Exception as exc:  # bs4 is lenient; anything raised here is a broken file
        raise IngestError(str(path), f"cannot parse HTML: {exc}") from exc
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    meta: dict[str, Any] = {}
    for tag in soup.find_all("meta"):
        name = str(tag.get("name") or "").lower()
        if name in ("country", "doc_type", "title") and tag.get("content"):
            meta[name] = str(tag["content"])
    body = soup.body or soup
    blocks: list[Block] = []
    trail: list[str] = []
    section: str | None = None
    wanted = set(_HTML_BLOCKS) | set(_HTML_HEADINGS)
    for el in body.find_all(list(wanted)):
        if any(parent.name in _HTML_BLOCKS for parent in el.parents):
            continue  # its text is already part of an enclosing block
        text = el.get_text(" ", strip=True)
        if not text:
            continue
        if el.name in _HTML_HEADINGS:
            level = int(el.name[1])
            if title is None and level == 1:
                title = text
            section = enter_heading(trail, level, text)
            blocks.append(Block(text, section=section, heading=True))
        else:
            blocks.append(Block(text, section=section))
    if not blocks:
        blocks = _paragraph_blocks(body.get_text("\n\n", strip=True), None)
    return LoadedDocument(title=title or meta.get("title"), blocks=blocks, metadata=meta)


# --- JSON ------------------------------------------------------------------------------------

_META_KEYS = ("title", "country", "doc_type")


def _load_json(data: bytes, path: Path) -> LoadedDocument:
    text = decode_text(data, path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(str(path), f"invalid JSON: {exc.msg} (line {exc.lineno})") from exc
    meta: dict[str, Any] = {}
    name = None
    if isinstance(value, dict):
        name = value.get("name") if isinstance(value.get("name"), str) else None
        for key in _META_KEYS:
            if isinstance(value.get(key), str | type(None)) and key in value:
                meta[key] = value[key]
        if "metadata" in value and isinstance(value["metadata"], dict):
            for key in _META_KEYS:
                if key in value["metadata"]:
                    meta.setdefault(key, value["metadata"][key])
        value = {k: v for k, v in value.items() if k not in _META_KEYS and k != "metadata"}
    blocks: list[Block] = []
    _flatten(value, [], blocks)
    title = meta.get("title") or name
    return LoadedDocument(title=str(title) if title else None, blocks=blocks, metadata=meta)


def _label(key: str) -> str:
    return key.replace("_", " ").strip().capitalize() if key.islower() else key


def _flatten(value: Any, trail: list[str], out: list[Block]) -> None:
    """Scalars of one object become ``Key: value`` lines of one block under its path heading;
    nested objects and lists of objects become sub-sections."""
    section = " > ".join(trail) or None
    if isinstance(value, dict):
        lines = []
        nested: list[tuple[str, Any]] = []
        for key, item in value.items():
            if isinstance(item, dict) or (
                isinstance(item, list) and any(isinstance(x, dict | list) for x in item)
            ):
                nested.append((str(key), item))
            elif isinstance(item, list):
                lines.append(f"{_label(str(key))}: {', '.join(_scalar(x) for x in item)}")
            else:
                lines.append(f"{_label(str(key))}: {_scalar(item)}")
        if lines:
            out.append(Block("\n".join(lines), section=section))
        for key, item in nested:
            sub = [*trail, _label(key)]
            out.append(Block(sub[-1], section=" > ".join(sub), heading=True))
            _flatten(item, sub, out)
    elif isinstance(value, list):
        scalars = [x for x in value if not isinstance(x, dict | list)]
        if scalars:
            out.append(Block("\n".join(f"- {_scalar(x)}" for x in scalars), section=section))
        for i, item in enumerate(x for x in value if isinstance(x, dict | list)):
            name = _item_name(item, i)
            sub = [*trail, name] if trail else [name]
            out.append(Block(name, section=" > ".join(sub), heading=True))
            _flatten(item, sub, out)
    else:
        out.append(Block(_scalar(value), section=section))


def _item_name(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in ("name", "title", "id", "code"):
            if isinstance(item.get(key), str | int) and not isinstance(item.get(key), bool):
                return str(item[key])
    return f"Item {index + 1}"


def _scalar(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# --- PDF -------------------------------------------------------------------------------------


def _load_pdf(data: bytes, path: Path) -> LoadedDocument:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import (
        DependencyError,
        FileNotDecryptedError,
        LimitReachedError,
        PdfReadError,
    )

    if not data.lstrip().startswith(b"%PDF"):
        raise IngestError(str(path), "not a PDF file (no %PDF header)")
    if b"%%EOF" not in data[-2048:]:
        # pypdf would try to rebuild a truncated file from whatever objects it finds and may
        # index half a document without a word of warning; refuse it instead.
        raise IngestError(str(path), "truncated or damaged PDF (no end-of-file marker)")
    try:
        # pypdf refuses arrays over 100,000 elements (a guard against malicious files); real
        # SEC filings exported by Microsoft Word exceed it. Ten times that is still bounded.
        with apply_configuration(array_maximum_element_count=_PDF_MAX_ARRAY):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise IngestError(str(path), "encrypted PDF (password required)")
            meta_title = (reader.metadata.title if reader.metadata else None) or None
            blocks: list[Block] = []
            for number, page in enumerate(reader.pages, start=1):
                text = page.extract_text() or ""
                blocks.extend(_paragraph_blocks(text, None, page=number))
    except IngestError:
        raise
    except (FileNotDecryptedError, DependencyError) as exc:
        raise IngestError(str(path), f"encrypted PDF that cannot be opened: {exc}") from exc
    except (PdfReadError, LimitReachedError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(str(path), f"damaged PDF: {exc}") from exc
    if not blocks:
        raise IngestError(str(path), "PDF has no extractable text (scanned images?)")
    title = str(meta_title).strip() if meta_title else None
    if not title:
        first = blocks[0].text.split("\n", 1)[0].strip()
        title = first if len(first) <= 120 else None
    return LoadedDocument(title=title, blocks=blocks)


# --- DOCX ------------------------------------------------------------------------------------


def _load_docx(data: bytes, path: Path) -> LoadedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(str(path), f"not a readable DOCX file: {exc}") from exc
    title = (document.core_properties.title or "").strip() or None
    blocks: list[Block] = []
    trail: list[str] = []
    section: str | None = None
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            level = _docx_heading_level(style)
            if level == 0:  # the Title style
                title = title or text
                continue
            if level:
                section = enter_heading(trail, level, text)
                blocks.append(Block(text, section=section, heading=True))
            else:
                blocks.append(Block(text, section=section))
        elif tag == "tbl":
            table = Table(child, document)
            rows = []
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                rows.append(" | ".join(cells))
            if rows:
                blocks.append(Block("\n".join(rows), section=section))
    return LoadedDocument(title=title, blocks=blocks)


def _docx_heading_level(style: str) -> int | None:
    """0 for Title, 1..9 for Heading N, None for body text."""
    if style == "Title":
        return 0
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


_LOADERS: dict[str, Callable[[bytes, Path], LoadedDocument]] = {
    ".txt": _load_text,
    ".text": _load_text,
    ".md": _load_text,
    ".markdown": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
    ".json": _load_json,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
