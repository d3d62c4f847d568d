"""The long-lived services a run needs, opened once from the settings and shared by runs.

Database, embedder, store, one LLM gateway (real endpoint, or the offline simulator started
on loopback when no provider is configured) and the LangGraph checkpointer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..config import Settings
from ..db import Database, discard_pipelined
from ..embeddings import Embedder, open_embedder
from ..errors import DatabaseError
from ..llm import GatewayConfig, LLMGateway, ResponseCache, SharedBudget, share_settings
from ..store import Store

__all__ = ["Services", "open_services"]

_SETUP_LOCK = 0x70726F71
"""Advisory lock key serialising the checkpointer's table setup across processes."""


@dataclass
class Services:
    """What runs share in one process. Build with :func:`open_services`."""

    settings: Settings
    database: Database
    store: Store
    gateway: LLMGateway
    checkpointer: AsyncPostgresSaver
    simulated: bool
    """True when the gateway talks to the offline simulator."""
    provider: str
    """Human description of the endpoint, e.g. ``simulator tier1 at http://127.0.0.1:PORT/v1``."""
    simulator: Any = None
    """The simulator started for this process (in a thread of its own), when one was; its
    ``stats()`` are useful."""


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    database: Database | None = None,
    embedder: Embedder | None = None,
    cache: bool = True,
    read_cache: bool = True,
    simulator_overrides: dict[str, Any] | None = None,
    gateway_overrides: dict[str, Any] | None = None,
    simulator_seed: int = 0,
    simulator_url: str | None = None,
) -> AsyncIterator[Services]:
    """Open every service named by ``settings``; close them (in reverse) on exit.

    Without a configured provider (``settings.provider_configured`` false) a simulator of
    profile ``settings.simulator_profile`` is run in a thread of its own on 127.0.0.1 at
    ``settings.simulator_time_scale``, with ``simulator_overrides`` applied on top; everything it writes is
    labelled simulated. ``simulator_url`` points at a simulator already running elsewhere
    (e.g. a :class:`~proposals.simulator.SimulatorProcess`) instead. ``cache=False`` leaves
    the persistent response cache out; ``read_cache=False`` sends every call to the provider
    but still stores the answers (``generate --no-cache``).
    """
    async with contextlib.AsyncExitStack() as stack:
        if database is None:
            database = await Database.open(settings)
            stack.push_async_callback(database.close)
        overrides = dict(gateway_overrides or {})
        simulator = None
        if simulator_url is None and not settings.provider_configured:
            simulator_url = settings.simulator_url
        if simulator_url is not None:
            overrides.update(base_url=simulator_url, api_key="simulator", simulated=True)
            simulated = True
            provider = f"simulator at {simulator_url}"
        elif settings.provider_configured:
            simulated = False
            where = settings.azure_openai_endpoint or settings.openai_base_url or "api.openai.com"
            provider = f"{'Azure OpenAI' if settings.azure_openai_endpoint else 'OpenAI-compatible'} endpoint {where}"
        else:
            from ..simulator import serve_in_thread

            sim_overrides: dict[str, Any] = {"time_scale": settings.simulator_time_scale}
            sim_overrides.update(simulator_overrides or {})
            # Its own thread and event loop: serving hundreds of calls must not compete with
            # this loop's client work (start and stop block, so they run in a worker thread).
            serving = serve_in_thread(
                settings.simulator_profile, seed=simulator_seed, **sim_overrides
            )
            simulator = await asyncio.to_thread(serving.__enter__)
            stack.push_async_callback(asyncio.to_thread, serving.__exit__, None, None, None)
            overrides.setdefault("base_url", simulator.base_url)
            overrides.setdefault("api_key", "simulator")
            overrides["simulated"] = True
            simulated = True
            provider = f"simulator {simulator.profile.name} at {simulator.base_url}"
        config = GatewayConfig.from_settings(settings, **overrides)
        shared = None
        if settings.shared_budget:
            shared = SharedBudget(
                database, share_settings(config, lease_s=settings.shared_budget_lease_s)
            )
        gateway = await stack.enter_async_context(
            LLMGateway(
                config,
                cache=ResponseCache(database) if cache else None,
                read_cache=read_cache,
                shared=shared,
            )
        )
        if embedder is None:
            # Embedding requests to the gateway's endpoint share its lease (shared budget).
            embedder = await stack.enter_async_context(
                open_embedder(settings, database=database, gateway=gateway)
            )
        store = Store(database, embedder)
        checkpointer = await _checkpointer(stack, database.url)
        yield Services(
            settings=settings,
            database=database,
            store=store,
            gateway=gateway,
            checkpointer=checkpointer,
            simulated=simulated,
            provider=provider,
            simulator=simulator,
        )


async def _checkpointer(stack: contextlib.AsyncExitStack, url: str) -> AsyncPostgresSaver:
    """LangGraph's PostgreSQL checkpointer on its own small pool, as it requires:
    autocommit, rows as dicts, no server-side prepared statements."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        reset=discard_pipelined,  # LangGraph writes in pipelines; see there
        name="proposals-checkpoints",
    )
    try:
        await pool.open(wait=True, timeout=30)
    except Exception as exc:
        raise DatabaseError(f"could not open the checkpoint pool: {exc}") from exc
    stack.push_async_callback(pool.close)
    saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
    try:
        # Processes starting together (several workers) would deadlock in LangGraph's own
        # migrations (CREATE INDEX CONCURRENTLY); one at a time, under an advisory lock.
        # The lock is polled, not waited for: a waiting statement holds a snapshot that the
        # other process's CREATE INDEX CONCURRENTLY would in turn wait for.
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as lock:
            while True:
                cur = await lock.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK,))
                row = await cur.fetchone()
                if row and row[0]:
                    break
                await asyncio.sleep(0.1)
            await saver.setup()
    except Exception as exc:
        raise DatabaseError(f"could not set up the checkpoint tables: {exc}") from exc
    return saver
