"""Ingestion: load files (PDF, DOCX, HTML, Markdown, text, JSON), split them by tokens along
their headings and paragraphs, embed the chunks and store them, idempotently.

Metadata precedence for a document's country and type: arguments (CLI flags) > the file's own
metadata (Markdown front matter, JSON top-level keys, HTML ``<meta name=...>``) > the folder
convention ``<root>/<CC>/<doc_type>/file`` or ``<root>/global/<doc_type>/file`` > defaults
(no country, ``other``). See ``examples/corpus/README.md``.

The stages (``prepare_file``, ``embedding_text``, ``DocumentSink``) are public so that other
drivers (the Ray pipeline in ``proposals.scale``) run the very same code as :func:`ingest`.
"""

from ..vocabulary import COUNTRY_CODES, DOC_TYPES, DocType, normalize_country, normalize_doc_type
from ._loaders import SUPPORTED_SUFFIXES, load_file
from ._model import Block, Chunk, IngestFailure, IngestReport, LoadedDocument
from ._pipeline import ingest, source_files
from ._ray import RayOptions, ingest_on_ray
from ._splitter import split_blocks
from ._stages import (
    DocumentSink,
    IngestProgress,
    PreparedFile,
    ProgressCallback,
    StoredDocument,
    embedding_text,
    prepare_file,
)

__all__ = [
    "COUNTRY_CODES",
    "DOC_TYPES",
    "SUPPORTED_SUFFIXES",
    "Block",
    "Chunk",
    "DocType",
    "DocumentSink",
    "IngestFailure",
    "IngestProgress",
    "IngestReport",
    "LoadedDocument",
    "PreparedFile",
    "ProgressCallback",
    "RayOptions",
    "StoredDocument",
    "embedding_text",
    "ingest",
    "ingest_on_ray",
    "load_file",
    "normalize_country",
    "normalize_doc_type",
    "prepare_file",
    "source_files",
    "split_blocks",
]
