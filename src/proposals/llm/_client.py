"""The HTTP and SDK clients a gateway talks through, and the reachability check.

One pooled ``httpx2`` client sized above the concurrency ceiling, wrapped by the ``openai`` SDK
(or its Azure flavour) with the SDK's own retries off: the gateway runs the one retry loop.
"""

from __future__ import annotations

import os

import httpx2
import openai

from ..errors import ConfigError
from ._config import GatewayConfig
from ._errors import ProviderUnreachable

__all__ = ["build_clients", "check_connection"]


def build_clients(
    config: GatewayConfig, transport: httpx2.AsyncBaseTransport | None = None
) -> tuple[httpx2.AsyncClient, openai.AsyncOpenAI]:
    """The pooled HTTP client and the SDK client on top of it; ``transport`` replaces the
    network (the simulator answering in process, for plans)."""
    pool = config.concurrency_max + config.pool_margin
    timeout = httpx2.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s))
    http = httpx2.AsyncClient(
        limits=httpx2.Limits(
            max_connections=pool,
            max_keepalive_connections=min(pool, config.pool_keepalive),
        ),
        timeout=timeout,
        follow_redirects=True,
        transport=transport,
    )
    return http, _make_client(config, http, timeout)


def _make_client(
    config: GatewayConfig, http: httpx2.AsyncClient, timeout: httpx2.Timeout
) -> openai.AsyncOpenAI:
    try:
        if config.is_azure:
            if not config.azure_api_key:
                raise ConfigError(
                    "Azure OpenAI endpoint set but no key: set AZURE_OPENAI_API_KEY "
                    "(or PROPOSALS_AZURE_OPENAI_API_KEY)"
                )
            return openai.AsyncAzureOpenAI(
                azure_endpoint=config.azure_endpoint or "",
                api_key=config.azure_api_key,
                api_version=config.azure_api_version,
                http_client=http,
                max_retries=0,
                timeout=timeout,
            )
        if not config.api_key and not config.base_url:
            raise ConfigError(
                "no LLM provider configured: set OPENAI_API_KEY (or OPENAI_BASE_URL for an "
                "OpenAI-compatible server, or AZURE_OPENAI_ENDPOINT), or use the simulator"
            )
        return openai.AsyncOpenAI(
            api_key=config.api_key or "no-key",
            base_url=config.base_url,
            http_client=http,
            max_retries=0,
            timeout=timeout,
        )
    except openai.OpenAIError as exc:
        raise ConfigError(f"cannot build the OpenAI client: {exc}") from exc


async def check_connection(
    http: httpx2.AsyncClient, client: openai.AsyncOpenAI, timeout_s: float
) -> None:
    """Raise :class:`ProviderUnreachable` when no connection opens to ``client``'s base URL;
    any HTTP answer, even an error status, counts as reachable."""
    url = str(client.base_url).rstrip("/") + "/models"
    try:
        response = await http.get(url, timeout=timeout_s)
        await response.aclose()
    except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
        reason = _os_reason(exc) or str(exc) or type(exc).__name__
        where = str(client.base_url).rstrip("/")
        raise ProviderUnreachable(f"cannot connect to {where}: {reason}") from exc
    except httpx2.HTTPError:
        return


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's words for a failed connection ("Connection refused"), found
    down the exception's causes, lower-cased; None when there is none."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and (seen.errno or seen.strerror):
            code = seen.errno if isinstance(seen.errno, int) else 0
            # errno < 0 are resolver codes (socket.gaierror): their strerror says it.
            return (os.strerror(code) if code > 0 else str(seen.strerror)).lower()
        for inner in getattr(seen, "exceptions", ()):  # an ExceptionGroup of attempts
            found = _os_reason(inner)
            if found:
                return found
        seen = seen.__cause__ or seen.__context__
    return None
