"""Token-aware splitting that follows the document's own structure.

Chunks never cross a section (heading) boundary nor a page boundary, so a citation's section
and page are exact. Inside a section, whole paragraphs are packed
up to the target size; a paragraph that is too large alone is cut at sentence ends, and a
sentence (or a single huge line) that is still too large is cut by tokens. Consecutive chunks of
one section share ``overlap`` tokens so a fact cut at a boundary is still whole in one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..config import Settings
from ..errors import InputError
from ..tokens import count_tokens, truncate_to_tokens
from ._model import Block, Chunk

__all__ = ["iter_chunks", "split_blocks"]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_SPACE = re.compile(r"\s+")


def split_blocks(
    blocks: Iterable[Block],
    chunk_tokens: int = Settings.model_fields["chunk_tokens"].default,
    overlap: int = Settings.model_fields["chunk_overlap"].default,
) -> list[Chunk]:
    """Split loaded blocks into chunks of at most about ``chunk_tokens`` tokens (defaults:
    the settings' ``chunk_tokens`` and ``chunk_overlap``)."""
    return list(iter_chunks(blocks, chunk_tokens, overlap))


def iter_chunks(
    blocks: Iterable[Block],
    chunk_tokens: int = Settings.model_fields["chunk_tokens"].default,
    overlap: int = Settings.model_fields["chunk_overlap"].default,
) -> Iterator[Chunk]:
    """The chunks of :func:`split_blocks`, made as ``blocks`` are read: only the chunk being
    packed is held, so a document of any length is split in bounded memory."""
    if chunk_tokens < 8:
        raise InputError("chunk_tokens must be at least 8")
    packer = _Packer(chunk_tokens, max(0, min(overlap, chunk_tokens // 2)))
    place: tuple[str | None, int | None] | None = None  # (section, page) of the open group
    for block in blocks:
        if block.heading or (place is not None and place != (block.section, block.page)):
            yield from packer.close()
            place = None
        if not block.heading:
            place = (block.section, block.page)
            yield from packer.add(block)
    yield from packer.close()


class _Packer:
    """Packs the paragraphs of one section (a group of blocks) into chunks, block by block;
    ``close`` ends the group. Chunks are numbered across groups."""

    def __init__(self, limit: int, overlap: int) -> None:
        self.limit = limit
        self.overlap = overlap
        self.ord = 0
        self._reset(None)

    def _reset(self, section: str | None) -> None:
        self.section = section
        self.parts: list[str] = []
        self.used = 0
        self.page: int | None = None
        self.fresh = False  # whether ``parts`` holds anything beyond the overlap carried over
        self.open = False

    def _emit(self) -> Chunk:
        text = "\n\n".join(self.parts)
        chunk = Chunk(self.ord, text, self.section, self.page, count_tokens(text))
        self.ord += 1
        return chunk

    def add(self, block: Block) -> Iterator[Chunk]:
        if not self.open:
            self._reset(block.section)
            self.open = True
        text = block.text.strip()
        n = count_tokens(text)
        limit, overlap = self.limit, self.overlap
        if n <= limit:
            units = [(text, n)]
        else:
            units = [(piece, count_tokens(piece)) for piece in _split_long(text, limit - overlap)]
        for text, n in units:
            if self.parts and self.fresh and self.used + n + 1 > limit:
                yield self._emit()
                tail = _tail("\n\n".join(self.parts), overlap)
                room = limit - n - 1
                if tail and count_tokens(tail) > room:
                    tail = _tail(tail, max(room, 0))
                self.parts = [tail] if tail else []
                self.used = count_tokens(tail) if tail else 0
                self.page = block.page
                self.fresh = False
            if self.page is None:
                self.page = block.page
            self.parts.append(text)
            self.used += n + (1 if len(self.parts) > 1 else 0)
            self.fresh = True

    def close(self) -> Iterator[Chunk]:
        if self.open and self.parts and self.fresh:
            yield self._emit()
        self.open = False


def _split_long(text: str, limit: int) -> list[str]:
    """Cut one over-long paragraph at sentence ends, then by tokens where still too long."""
    limit = max(limit, 1)
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        n = count_tokens(sentence)
        if n > limit:
            if current:
                pieces.append(" ".join(current))
                current, used = [], 0
            pieces.extend(_hard_split(sentence, limit))
            continue
        if current and used + n + 1 > limit:
            pieces.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += n + 1
    if current:
        pieces.append(" ".join(current))
    return pieces


def _hard_split(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` tokens, in linear time.

    Truncation runs on a bounded window ahead of the cursor, never on the whole remaining
    text, so a multi-megabyte line costs O(length), not O(length²).
    """
    window_chars = max(64, limit * 12)
    pieces: list[str] = []
    pos = 0
    while pos < len(text):
        window = text[pos : pos + window_chars]
        piece = truncate_to_tokens(window, limit).rstrip("\ufffd")
        if not piece or not window.startswith(piece):
            piece = window[: max(1, len(piece))]
        pos += len(piece)
        piece = piece.strip()
        if piece:
            pieces.append(piece)
    return pieces


def _tail(text: str, n: int) -> str:
    """The longest suffix of ``text`` starting at a word boundary with at most ``n`` tokens."""
    if n <= 0 or not text:
        return ""
    starts = [m.end() for m in _SPACE.finditer(text)]
    if not starts:
        return ""
    lo, hi = 0, len(starts) - 1  # find the smallest start index whose suffix fits
    best = ""
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = text[starts[mid] :]
        if count_tokens(candidate) <= n:
            best = candidate
            hi = mid - 1
        else:
            lo = mid + 1
    return best.strip()
