"""Ingestion: load files (PDF, DOCX, HTML, Markdown, text, JSON), split them by tokens along
their headings and paragraphs, embed the chunks and store them, idempotently.

Metadata precedence for a document's country and type: arguments (CLI flags) > the file's own
metadata (Markdown front matter, JSON top-level keys, HTML ``<meta name=...>``) > the folder
convention ``<root>/<CC>/<doc_type>/file`` or ``<root>/global/<doc_type>/file`` > defaults
(no country, ``other``). See ``examples/corpus/README.md``.

The stages (``prepare_file``, ``embedding_text``, ``DocumentSink``) are public so that other
drivers (the Ray pipeline in ``proposals.scale``) run the very same code as :func:`ingest`.
Underneath, ``parse_file`` (hash and labels; chunks made lazily, text streamed from disk) and
``DocumentWriter`` (one document, one transaction, any number of slices) let a driver stream
a large file in bounded memory, as :func:`ingest` does.
"""

from ..vocabulary import COUNTRY_CODES, DOC_TYPES, DocType, normalize_country, normalize_doc_type
from ._loaders import SUPPORTED_SUFFIXES, load_file
from ._meta import ResolvedMeta
from ._model import Block, Chunk, IngestFailure, IngestReport, LoadedDocument
from ._parse import ParsedFile, parse_file
from ._pipeline import ingest, source_files
from ._ray import RayOptions, check_ray_address, ingest_on_ray
from ._splitter import iter_chunks, split_blocks
from ._stages import (
    DocumentSink,
    IngestProgress,
    PreparedFile,
    ProgressCallback,
    StoredDocument,
    embedding_text,
    needs_embedding,
    prepare_file,
)
from ._writer import DocumentWriter

__all__ = [
    "COUNTRY_CODES",
    "DOC_TYPES",
    "SUPPORTED_SUFFIXES",
    "Block",
    "Chunk",
    "DocType",
    "DocumentSink",
    "DocumentWriter",
    "IngestFailure",
    "IngestProgress",
    "IngestReport",
    "LoadedDocument",
    "ParsedFile",
    "PreparedFile",
    "ProgressCallback",
    "RayOptions",
    "ResolvedMeta",
    "StoredDocument",
    "check_ray_address",
    "embedding_text",
    "ingest",
    "ingest_on_ray",
    "iter_chunks",
    "load_file",
    "needs_embedding",
    "normalize_country",
    "normalize_doc_type",
    "parse_file",
    "prepare_file",
    "source_files",
    "split_blocks",
]
