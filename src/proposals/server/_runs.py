"""Runs of the caller's tenant: plan (what a run would take, without calling the LLM), create
(202 + Location at once), list, read, cancel, the proposals of an ended run (JSON, or Markdown
with ``Accept: text/markdown``), and the timeline and accounting of its LLM calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from ..errors import NotFound
from ..llm import UsageTotals
from ..observe import Timeline
from ..pipeline import ProposalRequest, ProposalResult, RunStatus, render_markdown
from ..planning import Plan, make_plan
from ..runs import RunManager, RunRecord, timeline_of, usage_by
from ._auth import Tenant
from ._errors import checked_field
from ._state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["runs"])


class RunList(BaseModel):
    runs: list[RunRecord]
    """Newest first, without their results."""


class RunTimeline(BaseModel):
    """Every LLM call of a run so far, and the accounting folded from them."""

    run_id: str
    status: RunStatus
    calls: int
    """LLM calls made (answered, from the cache, failed, and still open)."""
    usage_by_node: dict[str, UsageTotals]
    usage_by_model: dict[str, UsageTotals]
    timeline: Timeline


def manager_of(request: Request) -> RunManager:
    manager: RunManager = state_of(request).manager
    return manager


async def _record(request: Request, run_id: str, tenant: str) -> RunRecord:
    record = await manager_of(request).get(run_id, tenant=tenant)
    if record is None:
        raise NotFound(f"no run {run_id!r}")
    return record


@router.post("/runs", status_code=202, response_model=RunRecord)
async def create_run(request: Request, tenant: Tenant, body: ProposalRequest) -> JSONResponse:
    """Queue a run and answer at once with its id and ``Location``; any worker executes it.
    Follow it at ``/v1/runs/{id}/events`` (SSE) or ``/v1/runs/{id}/ws``."""
    record = await manager_of(request).submit(body, tenant=tenant)
    return JSONResponse(
        record.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/runs/{record.id}"},
    )


@router.post("/runs/plan", responses={422: {}})
async def plan_run(
    request: Request,
    tenant: Tenant,
    body: ProposalRequest,
    sim_profile: str | None = None,
    time_scale: Annotated[float | None, Query(gt=0, le=10)] = None,
) -> Plan:
    """What a run of this request (the body of ``POST /v1/runs``) would take, worked out
    without calling the LLM: calls, input and output tokens, cost and wall time per node,
    which figures are estimates and from what, and budget warnings. Retrieval runs on the
    tenant's documents exactly as the run's would. ``sim_profile`` (and ``time_scale``)
    plan for a named simulator profile instead of the server's provider."""
    state = state_of(request)
    if sim_profile is not None:
        checked_field("query", "sim_profile", sim_profile, _known_profile)
    return await make_plan(
        body,
        state.settings,
        store=state.store.for_tenant(tenant),
        sim_profile=sim_profile,
        time_scale=time_scale,
    )


def _known_profile(name: str) -> str:
    from ..simulator import get_profile

    return get_profile(name).name


@router.get("/runs")
async def list_runs(
    request: Request,
    tenant: Tenant,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    """The tenant's runs, newest first (``status`` filters, ``limit``/``offset`` page)."""
    runs = await manager_of(request).list(tenant=tenant, status=status, limit=limit, offset=offset)
    return RunList(runs=runs)


@router.get("/runs/{run_id}", responses={404: {}})
async def get_run(request: Request, tenant: Tenant, run_id: str) -> RunRecord:
    """Status, progress per node, usage, error, the LLM endpoint (``provider``; ``simulated``
    when it is the offline simulator) and, once ended, the result."""
    return await _record(request, run_id, tenant)


@router.post("/runs/{run_id}/cancel", responses={404: {}})
async def cancel_run(request: Request, tenant: Tenant, run_id: str) -> RunRecord:
    """End the run ``cancelled`` (its in-flight calls are cancelled); an ended run is
    returned unchanged."""
    record = await manager_of(request).cancel(run_id, tenant=tenant, wait_s=10.0)
    if record is None:
        raise NotFound(f"no run {run_id!r}")
    return record


@router.get(
    "/runs/{run_id}/proposals",
    response_model=ProposalResult,
    responses={
        200: {"content": {"text/markdown": {}}},
        404: {},
        409: {"description": "the run has not ended, or it failed"},
    },
)
async def proposals(request: Request, tenant: Tenant, run_id: str) -> Response:
    """The run's result as JSON, or the Markdown report with ``Accept: text/markdown``."""
    record = await _record(request, run_id, tenant)
    if record.result is None:
        why = (
            f"run {run_id} {record.status}: {record.error}"
            if record.finished
            else f"run {run_id} is {record.status}; its proposals come when it ends"
        )
        return JSONResponse({"detail": why}, status_code=409)
    if "text/markdown" in request.headers.get("accept", ""):
        return PlainTextResponse(render_markdown(record.result), media_type="text/markdown")
    return Response(record.result.model_dump_json(), media_type="application/json")


@router.get("/runs/{run_id}/timeline", responses={404: {}})
async def run_timeline(request: Request, tenant: Tenant, run_id: str) -> RunTimeline:
    """Each LLM call's start, end, node, model, tokens, retries, cost and outcome (seconds
    since the first call), with per-node and per-model totals; also for a run in progress."""
    record = await _record(request, run_id, tenant)
    timeline = timeline_of(run_id, await manager_of(request).log.read(run_id))
    return RunTimeline(
        run_id=run_id,
        status=record.status,
        calls=len(timeline.calls),
        usage_by_node=usage_by(timeline, "node"),
        usage_by_model=usage_by(timeline, "model"),
        timeline=timeline,
    )
