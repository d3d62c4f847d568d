"""Python client of the HTTP API (``proposals serve``): create a run, follow its events with
automatic reconnect and resume, fetch its proposals, upload documents, search.

```python
async with ProposalsClient("https://proposals.example.com", api_key) as client:
    run = await client.create_run(request)                # queued at once
    async for event in client.events(run.id):             # survives dropped connections
        print(event.seq, event.type)
    result = await client.proposals(run.id)
```

:meth:`ProposalsClient.events` reconnects by itself when the stream breaks (a proxy's request
time limit, a network drop, a server restart) and resumes with ``Last-Event-ID`` from the last
event it yielded: every event arrives once, in order, ending with ``run_finished``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from .errors import ConfigError, InputError, NotFound, RuntimeFailure
from .pipeline import ProposalRequest, ProposalResult, RunStatus
from .planning import Plan
from .runs import RunEvent, RunFinished, RunRecord, parse_event
from .store import SearchHit

__all__ = ["ProposalsClient", "ServerUnavailable"]

log = logging.getLogger(__name__)

_UPLOAD_BATCH_BYTES = 16 * 1024 * 1024
_UPLOAD_BATCH_FILES = 32


class ServerUnavailable(RuntimeFailure):
    """The server could not be reached, or kept failing, for longer than the client waits."""


class ProposalsClient:
    """One connection pool to a proposals server. Use ``async with`` (or :meth:`aclose`).

    ``reconnect_for_s``: how long :meth:`events` keeps trying to reconnect without receiving
    anything before it gives up with :class:`ServerUnavailable`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        reconnect_for_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.reconnect_for_s = reconnect_for_s
        # The read timeout outlasts the server's heartbeat (at most 15 s): a stream silent
        # for longer is dead, and is reconnected.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, read=max(30.0, timeout_s)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- runs ----------------------------------------------------------------------------------

    async def create_run(self, request: ProposalRequest | Mapping[str, Any]) -> RunRecord:
        """Queue a run; returns its record (``status`` ``queued``) at once."""
        body = request.model_dump(mode="json") if isinstance(request, ProposalRequest) else request
        return RunRecord.model_validate(await self._call("POST", "/v1/runs", json=body))

    async def plan(
        self,
        request: ProposalRequest | Mapping[str, Any],
        *,
        sim_profile: str | None = None,
        time_scale: float | None = None,
    ) -> Plan:
        """What a run of ``request`` would take (``POST /v1/runs/plan``); no LLM is called."""
        body = request.model_dump(mode="json") if isinstance(request, ProposalRequest) else request
        params = {k: v for k, v in (("sim_profile", sim_profile), ("time_scale", time_scale)) if v}
        return Plan.model_validate(
            await self._call("POST", "/v1/runs/plan", json=body, params=params)
        )

    async def get_run(self, run_id: str) -> RunRecord:
        """The run's record: status, progress per node, usage, provider, result once ended."""
        return RunRecord.model_validate(await self._call("GET", f"/v1/runs/{run_id}"))

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunRecord]:
        """The tenant's runs, newest first, without results."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        data = await self._call("GET", "/v1/runs", params=params)
        return [RunRecord.model_validate(r) for r in data["runs"]]

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel the run; returns its record (``cancelled`` once its holder stopped it)."""
        return RunRecord.model_validate(await self._call("POST", f"/v1/runs/{run_id}/cancel"))

    async def proposals(self, run_id: str) -> ProposalResult:
        """The result of an ended run (:class:`InputError` while it runs or if it failed)."""
        return ProposalResult.model_validate(
            await self._call("GET", f"/v1/runs/{run_id}/proposals")
        )

    async def report(self, run_id: str) -> str:
        """The Markdown report of an ended run."""
        response = await self._send(
            "GET", f"/v1/runs/{run_id}/proposals", headers={"Accept": "text/markdown"}
        )
        return response.text

    async def events(self, run_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """The run's events with ``seq > after``, live, until ``run_finished``: reconnects
        after any drop and resumes from the last event yielded (each event once, in order)."""
        last = after
        quiet_since = time.monotonic()
        backoff = 0.1
        while True:
            try:
                async for item in self._sse(run_id, last):
                    quiet_since = time.monotonic()
                    backoff = 0.1
                    if item is None:
                        continue  # heartbeat
                    if item.seq <= last:
                        continue
                    last = item.seq
                    yield item
                    if isinstance(item, RunFinished):
                        return
                log.info("event stream of run %s ended early; resuming after %d", run_id, last)
            except (httpx.TransportError, ServerUnavailable) as exc:
                log.info("event stream of run %s broke (%r); resuming after %d", run_id, exc, last)
            if time.monotonic() - quiet_since > self.reconnect_for_s:
                raise ServerUnavailable(
                    f"no event from {self.base_url} for run {run_id} in "
                    f"{self.reconnect_for_s:.0f} s (last seq {last})"
                )
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    async def _sse(self, run_id: str, after: int) -> AsyncIterator[RunEvent | None]:
        """One SSE connection: events (and ``None`` for each heartbeat) until it ends."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        async with self._http.stream(
            "GET", f"/v1/runs/{run_id}/events", headers=headers
        ) as response:
            if response.status_code != 200:
                await response.aread()
                _raise_for(response)
            data: list[str] = []
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield parse_event("\n".join(data))
                        data = []
                elif line.startswith(":"):
                    yield None
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))

    async def wait(self, run_id: str, *, after: int = 0) -> RunFinished:
        """Follow the run until it ends; its terminal event."""
        async for event in self.events(run_id, after=after):
            if isinstance(event, RunFinished):
                return event
        raise ServerUnavailable(f"the event stream of run {run_id} ended without run_finished")

    # -- documents -----------------------------------------------------------------------------

    async def upload(
        self,
        paths: Iterable[str | PathLike[str]],
        *,
        country: str | None = None,
        doc_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """Upload files (folders are walked like ``proposals ingest`` does); one result per
        file: ``{"name", "status": ingested|unchanged|failed, "reason"?, "document_id"?,
        "chunks"?}``. Sent in batches that stay well under the server's size limit."""
        from .ingest import source_files

        files, failed, _ = await asyncio.to_thread(source_files, list(paths))
        results: list[dict[str, Any]] = [
            {"name": Path(f.path).name, "status": "failed", "reason": f.reason} for f in failed
        ]
        form = {k: v for k, v in (("country", country), ("doc_type", doc_type)) if v}
        batch: list[tuple[str, bytes]] = []
        size = 0
        for path, root in files:
            data = await asyncio.to_thread(path.read_bytes)
            if batch and (
                size + len(data) > _UPLOAD_BATCH_BYTES or len(batch) >= _UPLOAD_BATCH_FILES
            ):
                results += await self._upload_batch(batch, form)
                batch, size = [], 0
            batch.append((_upload_name(path, root), data))
            size += len(data)
        if batch:
            results += await self._upload_batch(batch, form)
        return results

    async def _upload_batch(
        self, batch: list[tuple[str, bytes]], form: dict[str, str]
    ) -> list[dict[str, Any]]:
        files = [("files", (name, data)) for name, data in batch]
        data = await self._call("POST", "/v1/documents", files=files, data=form)
        return list(data["files"])

    async def documents(self, **filters: str) -> list[dict[str, Any]]:
        """The tenant's documents (filters: ``country``, ``doc_type``, ``q``)."""
        return list((await self._call("GET", "/v1/documents", params=filters))["documents"])

    async def search(
        self,
        query: str,
        *,
        k: int = 10,
        country: str | None = None,
        doc_types: Iterable[str] = (),
    ) -> list[SearchHit]:
        """The tenant's chunks best matching ``query``."""
        params: list[tuple[str, str | int]] = [("q", query), ("k", k)]
        if country:
            params.append(("country", country))
        params += [("doc_type", t) for t in doc_types]
        data = await self._call("GET", "/v1/search", params=params)
        return [SearchHit.model_validate(h) for h in data["hits"]]

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        return (await self._send(method, path, **kw)).json()

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc
        _raise_for(response)
        return response


def _raise_for(response: httpx.Response) -> None:
    """Translate an error answer into the project's errors (one line each)."""
    code = response.status_code
    if code < 400:
        return
    try:
        detail: Any = response.json().get("detail")
    except (json.JSONDecodeError, AttributeError):
        detail = response.text.strip()[:300]
    if isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}" for d in detail
        )
    message = f"{response.request.method} {response.request.url.path}: {code} {detail}"
    if code == 401:
        raise ConfigError(f"{message} (set PROPOSALS_API_KEY to a key of this server)")
    if code == 404:
        raise NotFound(message)
    if code < 500:
        raise InputError(message)
    raise ServerUnavailable(message)


def _upload_name(path: Path, root: Path | None) -> str:
    """The name a file is uploaded under: with the folders that label it, as a local ingest
    reads them (the walked folder and the path below it; for a file named alone, its two
    nearest folders), so ``AR/report.pdf`` and ``BR/report.pdf`` stay two documents of their
    own countries on the server too."""
    if root is not None and path.is_relative_to(root):
        parts = [root.name, *path.relative_to(root).parts]
    else:
        parts = [*[p.name for p in path.parents][:2][::-1], path.name]
    return "/".join(p for p in parts if p)
