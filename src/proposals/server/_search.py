"""Search the caller's corpus, and read one cited chunk (for a citation view)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from ..errors import NotFound
from ..store import SearchHit, SearchMode
from ..vocabulary import normalize_country, normalize_doc_type
from ._auth import Tenant
from ._errors import checked_field
from ._state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["search"])


class SearchResult(BaseModel):
    hits: list[SearchHit]


@router.get("/search")
async def search(
    request: Request,
    tenant: Tenant,
    q: Annotated[str, Query(min_length=1, description="what to look for")],
    country: Annotated[str | None, Query(description="this country's and global documents")] = None,
    doc_type: Annotated[list[str] | None, Query(description="document type (repeatable)")] = None,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    mode: SearchMode = "hybrid",
) -> SearchResult:
    """The ``k`` chunks of the tenant's corpus best matching ``q``, with their citations."""
    store = state_of(request).store.for_tenant(tenant)
    cc = checked_field("query", "country", country, normalize_country)
    for value in doc_type or ():
        checked_field("query", "doc_type", value, normalize_doc_type)
    return SearchResult(hits=await store.search(q, k, country=cc, doc_types=doc_type, mode=mode))


@router.get("/chunks/{chunk_id}", responses={404: {}})
async def chunk(request: Request, tenant: Tenant, chunk_id: int) -> SearchHit:
    """One chunk's text with its document, page and section (score 0)."""
    found = await state_of(request).store.for_tenant(tenant).get_chunks([chunk_id])
    if not found:
        raise NotFound(f"no chunk {chunk_id}")
    return found[0]
