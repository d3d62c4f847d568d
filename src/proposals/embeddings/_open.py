"""The settings' embedder for the length of a ``with`` block, in the shared provider budget.

With ``PROPOSALS_EMBEDDING_PROVIDER=openai`` and ``PROPOSALS_SHARED_BUDGET`` on, embedding
requests are calls to an endpoint like any other: they go through an
:class:`~proposals.llm.LLMGateway` whose lease on the endpoint's shared budget
(:class:`~proposals.llm.SharedBudget`) gives them their share of its connections, requests and
tokens per minute. Otherwise this is :func:`embedder_from_settings`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..config import Settings
from ._base import Embedder
from ._openai import require_endpoint

if TYPE_CHECKING:
    from ..db import Database
    from ..llm import GatewayConfig, LLMGateway

__all__ = ["embedding_gateway_config", "open_embedder"]


def embedding_gateway_config(settings: Settings) -> GatewayConfig:
    """The gateway configuration of the endpoint the OpenAI embedder calls
    (``PROPOSALS_OPENAI_BASE_URL``, else api.openai.com). The configured RPM/TPM are that
    endpoint's when the LLM calls it too (no Azure endpoint set); otherwise they describe
    another endpoint and are left to be learned from its headers."""
    from ..llm import GatewayConfig

    same_endpoint = settings.azure_openai_endpoint is None
    return GatewayConfig.from_settings(
        settings,
        azure_endpoint=None,
        azure_api_key=None,
        rpm=settings.llm_rpm if same_endpoint else None,
        tpm=settings.llm_tpm if same_endpoint else None,
    )


@contextlib.asynccontextmanager
async def open_embedder(
    settings: Settings,
    *,
    database: Database | None = None,
    gateway: LLMGateway | None = None,
) -> AsyncIterator[Embedder]:
    """The embedder named by ``settings``, usable until the block exits.

    With the ``openai`` provider and a shared budget, its requests go through ``gateway``
    when that calls the same endpoint (one lease per process and endpoint), else through a
    gateway opened here with a lease of its own on ``database`` (opened from ``settings``
    when not given); the lease is deleted on exit. A process that dies without exiting
    loses its lease once it expires.
    """
    from . import embedder_from_settings

    if settings.embedding_provider != "openai" or not settings.shared_budget:
        yield embedder_from_settings(settings)
        return
    from ..llm import LLMGateway, SharedBudget, share_settings

    require_endpoint(settings.openai_api_key, settings.openai_base_url)  # before any I/O
    config = embedding_gateway_config(settings)
    endpoint = share_settings(config).endpoint  # what identifies the quota (its URL)
    if gateway is not None and share_settings(gateway.config).endpoint == endpoint:
        yield embedder_from_settings(settings, gateway=gateway)
        return
    async with contextlib.AsyncExitStack() as stack:
        if database is None:
            from ..db import Database

            database = await stack.enter_async_context(await Database.open(settings))
        lease = share_settings(config, lease_s=settings.shared_budget_lease_s)
        opened = await stack.enter_async_context(
            LLMGateway(config, shared=SharedBudget(database, lease))
        )
        yield embedder_from_settings(settings, gateway=opened)
