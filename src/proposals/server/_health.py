"""``/healthz`` (the process answers), ``/readyz`` (database reachable, migrations applied)
and ``GET /v1/meta`` (what a form needs: countries, document types, run defaults, provider)."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..db import load_migrations
from ..pipeline import NODES, RunOptions
from ..vocabulary import COUNTRY_CODES, DOC_TYPES
from ._auth import Tenant
from ._state import state_of

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers and every migration this code ships is applied."""
    state = state_of(request)
    expected = max(m.version for m in load_migrations())
    try:
        async with state.database.pool.connection(timeout=5) as conn:
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            row = await cur.fetchone()
    except (psycopg.Error, OSError, TimeoutError) as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    applied = int(row[0]) if row else 0
    if applied < expected:
        return JSONResponse(
            {"status": "unavailable", "reason": f"migrations at {applied}, code needs {expected}"},
            status_code=503,
        )
    return JSONResponse({"status": "ready", "migration": applied})


@router.get("/v1/meta", tags=["meta"])
async def meta(request: Request, tenant: Tenant) -> dict[str, object]:
    """Countries (all ISO codes, and those in this tenant's corpus), document types, the
    defaults of a run's options, the nodes of the graph and the LLM endpoint runs use."""
    state = state_of(request)
    async with state.database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT country FROM documents WHERE tenant = %s AND country IS NOT NULL"
            " ORDER BY 1",
            (tenant,),
        )
        corpus = [r[0] for r in await cur.fetchall()]
    services = state.services
    return {
        "tenant": tenant,
        "auth": state.options.auth,
        "countries": sorted(COUNTRY_CODES),
        "corpus_countries": corpus,
        "doc_types": list(DOC_TYPES),
        "nodes": list(NODES),
        "run_options": RunOptions().model_dump(mode="json"),
        "provider": services.provider if services is not None else None,
        "simulated": services.simulated if services is not None else None,
        "max_upload_bytes": state.options.max_upload_bytes,
    }
