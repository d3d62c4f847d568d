"""The FastAPI application: ``create_app(settings, options)``.

Its lifespan opens the run manager (and through it the migrated database), the embedder, the
API keys, the chunk store and ``options.workers`` in-process workers sharing one set of run
services (one LLM gateway: the configured endpoint, or the offline simulator, as the CLI picks
it); all are stopped in reverse order on shutdown (runs in progress go back to the queue).
OpenAPI at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..config import Settings
from ..embeddings import Embedder, embedder_from_settings
from ..keys import ApiKeys
from ..runs import RunManager, Worker
from ..store import Store
from . import _documents, _health, _runs, _search, _streams
from ._errors import BodyLimit, install_error_handlers
from ._state import ServerOptions, ServerState

__all__ = ["create_app"]

_STATIC = Path(__file__).parent / "static"


def create_app(
    settings: Settings,
    options: ServerOptions | None = None,
    *,
    embedder: Embedder | None = None,
) -> FastAPI:
    """The application serving the API (and the web page when ``server/static`` has one).

    ``embedder`` replaces the one named by the settings (tests use a small one).
    """
    opts = options or ServerOptions()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # With the shared budget, the OpenAI embedder's requests go through the run services'
        # gateway (one lease per process and endpoint): the services open it, at startup.
        in_budget = (
            embedder is None and settings.shared_budget and settings.embedding_provider == "openai"
        )
        chosen = embedder if embedder is not None or in_budget else embedder_from_settings(settings)
        service_options = {"embedder": chosen, **opts.service_options}
        async with contextlib.AsyncExitStack() as stack:
            manager = await RunManager.open(settings, **service_options)
            stack.push_async_callback(manager.close)
            database = manager.database
            services = await manager.services() if in_budget else None
            if chosen is None:
                assert services is not None and services.store.embedder is not None
                chosen = services.store.embedder
            state = ServerState(
                settings=settings,
                options=opts,
                database=database,
                embedder=chosen,
                keys=ApiKeys(database),
                store=Store(database, chosen),
                uploads=settings.data_dir / "uploads",
                manager=manager,
            )
            if opts.workers:
                # Opened now rather than on the first run: the endpoint is known (and shown
                # in /v1/meta) from the start, and a misconfiguration fails the startup.
                state.services = await manager.services()
                workers = [Worker(manager, slots=opts.slots) for _ in range(opts.workers)]
                tasks = [
                    asyncio.create_task(w.run(), name=f"worker-{i}") for i, w in enumerate(workers)
                ]
                stack.push_async_callback(_stop, tasks)
            app.state.server = state
            yield

    app = FastAPI(
        title="proposals",
        summary="Cited product proposals per country and customer profile, as a service.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=opts.max_upload_bytes)
    app.include_router(_health.router)
    app.include_router(_documents.router)
    app.include_router(_search.router)
    app.include_router(_runs.router)
    app.include_router(_streams.router)
    if (_STATIC / "index.html").is_file():
        # The page at / and its files under /static: a mount at / would answer every unknown
        # path (an API route's wrong method included) with the static 404.
        app.mount("/static", StaticFiles(directory=_STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(_STATIC / "index.html")

    return app


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the in-process workers; they hand their runs back to the queue."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
