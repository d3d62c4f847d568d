"""Documents of the caller's tenant: upload (multipart, many files), list, delete."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel

from ..errors import NotFound
from ..ingest import IngestReport, ingest
from ..vocabulary import normalize_country, normalize_doc_type
from ._auth import Tenant
from ._errors import checked_field
from ._state import ServerState, state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["documents"])


class FileResult(BaseModel):
    """What happened to one uploaded file."""

    name: str
    status: Literal["ingested", "unchanged", "failed"]
    reason: str | None = None
    """Why it failed (the other files are still ingested)."""
    document_id: int | None = None
    chunks: int | None = None


class UploadResult(BaseModel):
    files: list[FileResult]


class DocumentOut(BaseModel):
    """A stored document of the caller's tenant."""

    id: int
    title: str
    path: str
    country: str | None
    doc_type: str
    chunks: int
    tokens: int
    ingested_at: datetime


class DocumentList(BaseModel):
    documents: list[DocumentOut]


@router.get("/documents")
async def list_documents(
    request: Request,
    tenant: Tenant,
    country: Annotated[str | None, Query(description="this country's documents only")] = None,
    doc_type: Annotated[str | None, Query(description="this type only")] = None,
    q: Annotated[str | None, Query(description="words in the title or path")] = None,
) -> DocumentList:
    """The tenant's documents, global ones first, then by country, type and path."""
    cc = checked_field("query", "country", country, normalize_country)
    dt = checked_field("query", "doc_type", doc_type, normalize_doc_type)
    words = (q or "").lower().split()
    docs = await state_of(request).store.for_tenant(tenant).list_documents()
    return DocumentList(
        documents=[
            DocumentOut(
                id=d.id,
                title=d.title,
                path=d.path,
                country=d.country,
                doc_type=d.doc_type,
                chunks=d.chunks,
                tokens=d.tokens,
                ingested_at=d.updated_at,
            )
            for d in docs
            if (cc is None or d.country == cc)
            and (dt is None or d.doc_type == dt)
            and all(w in f"{d.title} {d.path}".lower() for w in words)
        ]
    )


@router.delete("/documents/{document_id}", status_code=204, responses={404: {}})
async def delete_document(request: Request, tenant: Tenant, document_id: int) -> Response:
    """Delete a document, its chunks and its uploaded file."""
    state = state_of(request)
    path = await state.store.for_tenant(tenant).remove_document(document_id)
    if path is None:
        raise NotFound(f"no document {document_id}")
    stored = Path(path)
    if stored.is_relative_to((state.uploads / tenant).resolve()):
        await asyncio.to_thread(stored.unlink, missing_ok=True)
    return Response(status_code=204)


@router.post("/documents", responses={413: {"description": "body over the upload limit"}})
async def upload_documents(
    request: Request,
    tenant: Tenant,
    files: Annotated[list[UploadFile], File(description="one or more files")],
    country: Annotated[str | None, Form(description="ISO code for every file, or 'global'")] = None,
    doc_type: Annotated[str | None, Form(description="document type for every file")] = None,
) -> UploadResult:
    """Ingest the files (idempotent: a file already stored unchanged is reported so)."""
    state = state_of(request)
    code = checked_field("body", "country", country, normalize_country)
    checked_field("body", "doc_type", doc_type, normalize_doc_type)
    # One folder per label: report.pdf uploaded for AR and for BR are two documents, while the
    # same name uploaded again for the same country is a new version of the same document.
    label = "_" if country is None else (code or "global")
    folder = state.uploads / tenant / label
    saved: dict[str, Path] = {}
    results: dict[str, FileResult] = {}
    order: list[str] = []
    for upload in files:
        name = _relative_name(upload.filename)
        order.append(name or "?")
        if not name:
            shown = upload.filename or "?"
            order[-1] = shown
            results[shown] = FileResult(
                name=shown,
                status="failed",
                reason="a plain file name is required (not empty, hidden or with '..')",
            )
            continue
        if name in saved:
            results[name] = FileResult(
                name=name, status="failed", reason="the same file name twice in one upload"
            )
            continue
        data = await upload.read()
        saved[name] = await asyncio.to_thread(_save, folder, name, data)
    if saved:
        report = await ingest(
            list(saved.values()),
            database=state.database,
            embedder=state.embedder,
            country=country,
            doc_type=doc_type,
            tenant=tenant,
            chunk_tokens=state.settings.chunk_tokens,
            chunk_overlap=state.settings.chunk_overlap,
        )
        state.store.invalidate()  # new chunks: the search statistics are stale
        results.update(await _outcomes(state, tenant, saved, report))
    return UploadResult(files=[results[n] for n in dict.fromkeys(order)])


def _relative_name(filename: str | None) -> str:
    """The upload's file name with any folders a browser sent (a folder upload), made safe.

    Only plain names survive: no absolute paths, no ``..``, no hidden files or folders, so a
    name can never leave the tenant's upload folder.
    """
    parts = [p.strip() for p in (filename or "").replace("\\", "/").split("/")]
    parts = [p for p in parts if p and p != "."]
    if not parts or any(p == ".." or p.startswith(".") for p in parts):
        return ""
    return "/".join(parts)


def _save(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.resolve()


async def _outcomes(
    state: ServerState, tenant: str, saved: dict[str, Path], report: IngestReport
) -> dict[str, FileResult]:
    by_key = {p.as_posix(): n for n, p in saved.items()}
    out: dict[str, FileResult] = {}
    for failure in report.failed:
        name = by_key.get(failure.path, Path(failure.path).name)
        out[name] = FileResult(name=name, status="failed", reason=failure.reason)
        await asyncio.to_thread(saved[name].unlink, missing_ok=True)
    stored = {
        d.path: (d.id, d.chunks)
        for d in await state.store.for_tenant(tenant).list_documents()
        if d.path in by_key
    }
    done = {k: "ingested" for k in [*report.added, *report.updated, *report.relabelled]}
    done.update({k: "unchanged" for k in report.unchanged})
    for key, status in done.items():
        name = by_key.get(key, Path(key).name)
        doc_id, chunks = stored.get(key, (None, None))
        out[name] = FileResult(
            name=name,
            status="ingested" if status == "ingested" else "unchanged",
            document_id=doc_id,
            chunks=chunks,
        )
    return out
