"""A real uvicorn server on a free loopback port, in a thread with its own event loop (so the
test's loop can drive clients against it), for the service tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from proposals.config import Settings
from proposals.server import ServerOptions, create_app


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextlib.contextmanager
def serve_in_thread(
    settings: Settings,
    options: ServerOptions | None = None,
    *,
    embedder: Any = None,
    port: int = 0,
) -> Iterator[LiveServer]:
    """Start the app on 127.0.0.1 (``port`` 0: a free one), yield once it accepts
    connections, stop it (graceful, then forced) on exit."""
    app = create_app(settings, options or ServerOptions(), embedder=embedder)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio", lifespan="on"
    )
    config.timeout_graceful_shutdown = 3
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server stopped while starting (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start within 120 s")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{bound}", server, thread)
    finally:
        server.should_exit = True
        thread.join(30)
        if thread.is_alive():
            server.force_exit = True
            thread.join(30)
