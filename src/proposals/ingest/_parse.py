"""Parse one file: hash its bytes, read its title and metadata, resolve its labels, and make
its chunks on demand.

Plain text and Markdown are streamed from disk (a file of any size is split in bounded
memory); the other formats are parsed whole (their size is bounded by ``max_mb``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import IngestError
from ._loaders import load_bytes
from ._meta import UNSET, ResolvedMeta, resolve_meta
from ._model import Block, Chunk
from ._splitter import iter_chunks
from ._textstream import (
    STREAMED_SUFFIXES,
    TextDocument,
    TextFileInfo,
    open_text_file,
    scan_text_file,
)

__all__ = ["ParsedFile", "parse_file"]


class ParsedFile:
    """A file whose bytes are hashed and whose labels are resolved; :meth:`chunks` makes its
    chunks as they are read. Use it in the process (and thread) that parsed it."""

    def __init__(
        self,
        key: str,
        digest: str,
        meta: ResolvedMeta,
        file_meta: dict[str, Any],
        *,
        path: Path,
        blocks: list[Block] | None = None,
        text: tuple[TextDocument | None, TextFileInfo] | None = None,
    ) -> None:
        self.key = key
        """The stored path (absolute, POSIX form)."""
        self.digest = digest
        self.meta = meta
        self.file_meta = file_meta
        """The file's own metadata plus its format and size in bytes, as stored."""
        self._path = path
        self._blocks = blocks
        self._text = text

    def chunks(
        self,
        chunk_tokens: int = Settings.model_fields["chunk_tokens"].default,
        overlap: int = Settings.model_fields["chunk_overlap"].default,
    ) -> Iterator[Chunk]:
        """The file's chunks in order, made as they are read. A streamed file is read again
        on each call but the first; one that changed since it was hashed raises
        ``IngestError`` when the end is reached."""
        if self._blocks is not None:
            return iter_chunks(self._blocks, chunk_tokens, overlap)
        assert self._text is not None
        doc, scan = self._text
        if doc is None:
            doc = open_text_file(self._path, scan)
        self._text = (None, scan)  # the next call opens the file anew
        return iter_chunks(doc.blocks, chunk_tokens, overlap)


def parse_file(
    path: str | PathLike[str],
    root: str | PathLike[str] | None = None,
    *,
    country: str | None = None,
    doc_type: str | None = None,
    max_mb: float | None = None,
) -> ParsedFile:
    """Hash ``path``, read its title and metadata and resolve its country and type
    (``country`` / ``doc_type`` force them, ``"global"`` meaning none; ``root`` is the folder
    it was found under, for the folder convention). Synchronous: call it off the event loop.
    Raises ``IngestError`` naming the file (too large, unreadable, not text...)."""
    file = Path(path).expanduser().resolve()
    top = Path(root).expanduser().resolve() if root is not None else None
    limit = max_mb or Settings.model_fields["max_file_mb"].default
    try:
        size_mb = file.stat().st_size / (1024 * 1024)
    except OSError as exc:
        raise IngestError(str(file), f"cannot read file: {exc.strerror or exc}") from exc
    if size_mb > limit:
        raise IngestError(
            str(file),
            f"file is {size_mb:.3g} MB, over the {limit:g} MB limit "
            "(PROPOSALS_MAX_FILE_MB); split it, or raise the limit",
        )
    blocks: list[Block] | None = None
    text: tuple[TextDocument | None, TextFileInfo] | None = None
    if file.suffix.lower() in STREAMED_SUFFIXES:
        scan = scan_text_file(file)
        doc = open_text_file(file, scan)
        digest, size, title, own_meta = scan.digest, scan.size, doc.title, doc.metadata
        text = (doc, scan)
    else:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise IngestError(str(file), f"cannot read file: {exc.strerror or exc}") from exc
        loaded = load_bytes(data, file)
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
        title, own_meta, blocks = loaded.title, loaded.metadata, loaded.blocks
    meta = resolve_meta(
        file,
        top,
        own_meta,
        title,
        country=UNSET if country is None else country,
        doc_type=doc_type,
    )
    file_meta = {**own_meta, "source_format": file.suffix.lower().lstrip("."), "bytes": size}
    return ParsedFile(file.as_posix(), digest, meta, file_meta, path=file, blocks=blocks, text=text)
