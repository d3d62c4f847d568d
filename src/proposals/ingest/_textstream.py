"""Plain text and Markdown, read line by line: a file of any size is turned into blocks while
only one paragraph (at most ``_PARAGRAPH_CHARS``) and the head of the file are held.

The same code reads bytes already in memory (:func:`load_text_bytes`) and a file streamed from
disk (:func:`open_text_file`), so both give the same title, metadata and blocks. The title is
the front matter's, else (Markdown) the first level-1 heading or (text) the first line, found
within the first ``HEAD_CHARS`` of the text.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, Any

import yaml

from ..errors import IngestError
from ._model import Block

__all__ = [
    "HEAD_CHARS",
    "STREAMED_SUFFIXES",
    "TextDocument",
    "TextFileInfo",
    "decode_text",
    "load_text_bytes",
    "open_text_file",
    "scan_text_file",
]

HEAD_CHARS = 1 << 20
"""How much of the text is read ahead to find the title (and the front matter's end)."""
_PARAGRAPH_CHARS = 1 << 20
"""A paragraph longer than this (no blank line in a megabyte) is cut at a line end."""
_READ = 1 << 20
_SAMPLE = 65536
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_UNDERLINE = re.compile(r"\s*(=+|-+)\s*")
_MARKDOWN = frozenset({".md", ".markdown"})
STREAMED_SUFFIXES: frozenset[str] = frozenset({".txt", ".text", *_MARKDOWN})
"""Formats read line by line from disk (the others are parsed whole)."""


@dataclass(slots=True)
class TextDocument:
    """Title, metadata and the (lazy) blocks of a text or Markdown document."""

    title: str | None
    metadata: dict[str, Any]
    blocks: Iterator[Block]


# --- decoding ----------------------------------------------------------------------------------


def decode_text(data: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), else Windows-1252 when the bytes look like text.

    Binary content (NUL bytes, many control characters) is refused with a clear reason, so a
    mislabelled binary file is never indexed as garbage.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return _check_plausible(data.decode("utf-16"), path)
        except UnicodeDecodeError as exc:
            raise IngestError(str(path), "invalid UTF-16 text") from exc
    if b"\x00" in data[:_SAMPLE]:
        raise IngestError(str(path), "binary content (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise IngestError(
                str(path), "not valid UTF-8 and not Windows-1252/Latin-1 text"
            ) from exc
    return _check_plausible(text, path)


def _check_plausible(text: str, path: Path) -> str:
    _check_sample(text[:_SAMPLE], path)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_sample(sample: str, path: Path) -> None:
    if not sample:
        return
    bad = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\n\r\t\f") or ch == "\ufffd")
    if bad / len(sample) > 0.01:
        raise IngestError(str(path), "binary or garbled content (control characters), not text")


@dataclass(slots=True, frozen=True)
class TextFileInfo:
    """What one pass over a text file found: its hash, size and encoding."""

    digest: str
    size: int
    encoding: str


def scan_text_file(path: Path) -> TextFileInfo:
    """Hash ``path`` and choose its encoding in one pass of 1 MiB reads (as
    :func:`decode_text` would: UTF-16 by BOM, else UTF-8, else Windows-1252). Raises
    ``IngestError`` for an empty or binary file."""
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    cp1252 = codecs.getincrementaldecoder("cp1252")()
    utf8_ok = cp1252_ok = True
    size = 0
    blank = True
    first = b""
    try:
        with path.open("rb") as f:
            while block := f.read(_READ):
                if not size:
                    first = block[:_SAMPLE]
                size += len(block)
                digest.update(block)
                blank = blank and not block.strip()
                if first.startswith((b"\xff\xfe", b"\xfe\xff")):
                    continue
                utf8_ok = utf8_ok and _decodes(utf8, block)
                cp1252_ok = cp1252_ok and _decodes(cp1252, block)
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from exc
    if blank:
        raise IngestError(str(path), "empty file")
    if first.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in first:
        raise IngestError(str(path), "binary content (NUL bytes), not text")
    elif utf8_ok and _decodes(utf8, b"", final=True):
        encoding = "utf-8-sig"
    elif cp1252_ok:
        encoding = "cp1252"
    else:
        raise IngestError(str(path), "not valid UTF-8 and not Windows-1252/Latin-1 text")
    return TextFileInfo(digest.hexdigest(), size, encoding)


def _decodes(decoder: codecs.IncrementalDecoder, block: bytes, *, final: bool = False) -> bool:
    try:
        decoder.decode(block, final)
    except UnicodeDecodeError:
        return False
    return True


class _HashingReader(io.RawIOBase):
    """A binary file that hashes what is read through it (to see that the file streamed is
    the file that was hashed)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _file_lines(path: Path, info: TextFileInfo) -> Iterator[str]:
    """The lines of ``path`` without their ends (universal newlines), a line longer than a
    paragraph cut in pieces; fails if the bytes read are not the ones hashed."""
    try:
        hashing = _HashingReader(path.open("rb"))
        with io.TextIOWrapper(io.BufferedReader(hashing), encoding=info.encoding) as text:
            sample: list[str] = []
            sampled = 0
            while line := text.readline(_PARAGRAPH_CHARS):
                if sampled < _SAMPLE:
                    sample.append(line)
                    sampled += len(line)
                    if sampled >= _SAMPLE:
                        _check_sample("".join(sample)[:_SAMPLE], path)
                yield line[:-1] if line.endswith("\n") else line
            if sampled < _SAMPLE:
                _check_sample("".join(sample), path)
            if hashing.digest.hexdigest() != info.digest:
                raise IngestError(str(path), "the file changed while it was being read")
    except UnicodeDecodeError as exc:
        raise IngestError(str(path), "the file changed while it was being read") from exc
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from exc


# --- documents -----------------------------------------------------------------------------------


def load_text_bytes(data: bytes, path: Path) -> TextDocument:
    """A text or Markdown document from bytes in memory (the suffix of ``path`` decides)."""
    lines = iter(decode_text(data, path).split("\n"))
    return _document(lines, path)


def open_text_file(path: Path, info: TextFileInfo) -> TextDocument:
    """A text or Markdown document streamed from ``path`` (scanned by :func:`scan_text_file`):
    its blocks are read from disk as they are consumed."""
    return _document(_file_lines(path, info), path)


def _document(lines: Iterator[str], path: Path) -> TextDocument:
    markdown = path.suffix.lower() in _MARKDOWN
    meta: dict[str, Any] = {}
    first_h1: list[str] = []
    if markdown:
        meta, lines = _front_matter(lines, path)
        blocks = _markdown_blocks(lines, first_h1)
    else:
        blocks = _text_blocks(lines)
    head: list[Block] = []
    chars = 0
    for block in blocks:
        head.append(block)
        chars += len(block.text)
        if chars >= HEAD_CHARS or (not markdown and head):
            break
    title: Any = meta.get("title")
    if title is None and markdown:
        title = first_h1[0] if first_h1 else None
    elif not markdown and head:
        first_line = head[0].text.split("\n", 1)[0].strip()
        title = first_line if 0 < len(first_line) <= 120 else None
    return TextDocument(str(title) if title else None, meta, chain(head, blocks))


def _front_matter(lines: Iterator[str], path: Path) -> tuple[dict[str, Any], Iterator[str]]:
    """YAML between a first line ``---`` and the next line starting with ``---`` (looked for
    within ``HEAD_CHARS``; without it the text has no front matter)."""
    first = next(lines, None)
    if first is None:
        return {}, iter(())
    if first != "---":
        return {}, chain([first], lines)
    raw: list[str] = []
    chars = 0
    for line in lines:
        if line.startswith("---"):
            break
        raw.append(line)
        chars += len(line) + 1
        if chars > HEAD_CHARS:
            return {}, chain([first], raw, lines)
    else:
        return {}, chain([first], raw)
    try:
        meta = yaml.safe_load("\n".join(raw)) or {}
    except yaml.YAMLError as exc:
        raise IngestError(str(path), f"invalid YAML front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise IngestError(str(path), "front matter is not a mapping of keys to values")
    return {str(k): v for k, v in meta.items()}, lines


class _Paragraphs:
    """Lines gathered into paragraph blocks (a blank line ends one)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.chars = 0
        self.section: str | None = None

    def add(self, line: str) -> Iterator[Block]:
        if not line.strip():
            yield from self.flush()
            return
        self.lines.append(line)
        self.chars += len(line) + 1
        if self.chars > _PARAGRAPH_CHARS:
            yield from self.flush()

    def flush(self) -> Iterator[Block]:
        if self.lines:
            text = "\n".join(self.lines).strip()
            self.lines, self.chars = [], 0
            if text:
                yield Block(text, section=self.section)


def _text_blocks(lines: Iterable[str]) -> Iterator[Block]:
    """Paragraphs, and headings underlined with ``===`` or ``---`` (setext style)."""
    paragraphs = _Paragraphs()
    it = iter(lines)
    line = next(it, None)
    while line is not None:
        nxt = next(it, None)
        if (
            line.strip()
            and len(line) < 120
            and nxt is not None
            and _UNDERLINE.fullmatch(nxt)
            and len(nxt.strip()) >= 3
        ):
            yield from paragraphs.flush()
            paragraphs.section = line.strip()
            yield Block(paragraphs.section, section=paragraphs.section, heading=True)
            line = next(it, None)
            continue
        yield from paragraphs.add(line)
        line = nxt
    yield from paragraphs.flush()


def _markdown_blocks(lines: Iterable[str], first_h1: list[str]) -> Iterator[Block]:
    """Paragraphs under ATX headings (``#`` ... ``######``); fenced code is never a heading.
    The first level-1 heading met is put in ``first_h1``."""
    paragraphs = _Paragraphs()
    trail: list[str] = []  # heading path, one entry per level
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
            yield from paragraphs.add(line)
            continue
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            yield from paragraphs.flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            if level == 1 and not first_h1:
                first_h1.append(heading)
            paragraphs.section = enter_heading(trail, level, heading)
            yield Block(heading, section=paragraphs.section, heading=True)
        else:
            yield from paragraphs.add(line)
    yield from paragraphs.flush()


def enter_heading(trail: list[str], level: int, heading: str) -> str:
    """Put ``heading`` at ``level`` (1-based) of the heading path ``trail`` (deeper levels are
    dropped, skipped levels left blank) and return the section label, e.g. ``A > B``."""
    del trail[level - 1 :]
    trail.extend([""] * (level - 1 - len(trail)))
    trail.append(heading)
    return " > ".join(t for t in trail if t)
