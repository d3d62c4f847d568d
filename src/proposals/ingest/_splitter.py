"""Token-aware splitting that follows the document's own structure.

Chunks never cross a section (heading) boundary nor a page boundary, so a citation's section
and page are exact. Inside a section, whole paragraphs are packed
up to the target size; a paragraph that is too large alone is cut at sentence ends, and a
sentence (or a single huge line) that is still too large is cut by tokens. Consecutive chunks of
one section share ``overlap`` tokens so a fact cut at a boundary is still whole in one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..config import Settings
from ..errors import InputError
from ..tokens import count_tokens, truncate_to_tokens
from ._model import Block, Chunk

__all__ = ["split_blocks"]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_SPACE = re.compile(r"\s+")


def split_blocks(
    blocks: Iterable[Block],
    chunk_tokens: int = Settings.model_fields["chunk_tokens"].default,
    overlap: int = Settings.model_fields["chunk_overlap"].default,
) -> list[Chunk]:
    """Split loaded blocks into chunks of at most about ``chunk_tokens`` tokens (defaults:
    the settings' ``chunk_tokens`` and ``chunk_overlap``)."""
    if chunk_tokens < 8:
        raise InputError("chunk_tokens must be at least 8")
    overlap = max(0, min(overlap, chunk_tokens // 2))
    chunks: list[Chunk] = []
    group: list[Block] = []
    for block in blocks:
        if block.heading or (
            group and (group[-1].section, group[-1].page) != (block.section, block.page)
        ):
            _pack_group(group, chunk_tokens, overlap, chunks)
            group = []
        if not block.heading:
            group.append(block)
    _pack_group(group, chunk_tokens, overlap, chunks)
    return chunks


def _pack_group(group: list[Block], limit: int, overlap: int, out: list[Chunk]) -> None:
    """Pack the paragraphs of one section into chunks appended to ``out``."""
    if not group:
        return
    section = group[0].section
    units: list[tuple[str, int, int | None]] = []  # (text, tokens, page)
    for block in group:
        text = block.text.strip()
        n = count_tokens(text)
        if n <= limit:
            units.append((text, n, block.page))
        else:
            units.extend(
                (piece, count_tokens(piece), block.page)
                for piece in _split_long(text, limit - overlap)
            )
    parts: list[str] = []
    used = 0
    page: int | None = None
    fresh = False  # whether ``parts`` holds anything beyond the overlap carried over

    def emit() -> None:
        text = "\n\n".join(parts)
        out.append(Chunk(len(out), text, section, page, count_tokens(text)))

    for text, n, unit_page in units:
        if parts and fresh and used + n + 1 > limit:
            emit()
            tail = _tail("\n\n".join(parts), overlap)
            room = limit - n - 1
            if tail and count_tokens(tail) > room:
                tail = _tail(tail, max(room, 0))
            parts = [tail] if tail else []
            used = count_tokens(tail) if tail else 0
            page = unit_page
            fresh = False
        if page is None:
            page = unit_page
        parts.append(text)
        used += n + (1 if len(parts) > 1 else 0)
        fresh = True
    if parts and fresh:
        emit()


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
