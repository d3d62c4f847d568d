"""Documents of the caller's tenant: upload (multipart, many files), list, delete."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel

from ..errors import InputError
from ..ingest import IngestReport, ingest, normalize_country, normalize_doc_type
from ._auth import Tenant
from ._errors import field_error
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
    for name, value, check in (
        ("country", country, normalize_country),
        ("doc_type", doc_type, normalize_doc_type),
    ):
        try:
            check(value)
        except InputError as exc:
            raise field_error(("body", name), str(exc), value) from exc
    folder = state.uploads / tenant
    saved: dict[str, Path] = {}
    results: dict[str, FileResult] = {}
    order: list[str] = []
    for upload in files:
        name = Path(upload.filename or "").name.strip()
        order.append(name or "?")
        if not name or name.startswith("."):
            results[name or "?"] = FileResult(
                name=name or "?", status="failed", reason="a file name is required"
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
        results.update(await _outcomes(state, tenant, saved, report))
    return UploadResult(files=[results[n] for n in dict.fromkeys(order)])


def _save(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
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
    async with state.database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT d.path, d.id, count(c.id) FROM documents d"
            " LEFT JOIN chunks c ON c.document_id = d.id"
            " WHERE d.tenant = %s AND d.path = ANY(%s) GROUP BY d.id",
            (tenant, list(by_key)),
        )
        stored = {r[0]: (int(r[1]), int(r[2])) for r in await cur.fetchall()}
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
