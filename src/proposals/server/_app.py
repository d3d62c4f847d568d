"""The FastAPI application: ``create_app(settings, options)``.

Its lifespan opens the database (migrated), the embedder, the API keys, and (when the run
manager is available) the run services, the manager and ``options.workers`` in-process
workers; all are closed in reverse order on shutdown. OpenAPI at ``/docs``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ..config import Settings
from ..db import Database
from ..embeddings import Embedder, embedder_from_settings
from ..keys import ApiKeys
from ..store import Store
from . import _documents, _health, _search
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
        async with contextlib.AsyncExitStack() as stack:
            database = await Database.open(settings)
            stack.push_async_callback(database.close)
            chosen = embedder or embedder_from_settings(settings)
            state = ServerState(
                settings=settings,
                options=opts,
                database=database,
                embedder=chosen,
                keys=ApiKeys(database),
                store=Store(database, chosen),
                uploads=settings.data_dir / "uploads",
            )
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
    if (_STATIC / "index.html").is_file():
        # The page at / and its files under /static: a mount at / would answer every unknown
        # path (an API route's wrong method included) with the static 404.
        app.mount("/static", StaticFiles(directory=_STATIC), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(_STATIC / "index.html")

    return app
