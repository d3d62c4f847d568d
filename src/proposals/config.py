"""Settings, read once at the edge (CLI or server) and passed down.

Every field can be set by a ``PROPOSALS_<FIELD>`` environment variable or a ``.env`` file in
the working directory. The OpenAI / Azure OpenAI credentials also accept their customary
unprefixed names (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``AZURE_OPENAI_*``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_TENANT", "Settings", "default_data_dir"]

DEFAULT_TENANT = "local"
"""The tenant of the CLI and of the server's no-auth local mode."""


def default_data_dir() -> Path:
    """Per-user data folder: ``$XDG_DATA_HOME/proposals`` or ``~/.local/share/proposals``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "proposals"


class Settings(BaseSettings):
    """All configuration of one process. Build it once; pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="PROPOSALS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir)
    """Folder for the embedded PostgreSQL cluster, caches and reports."""
    database_url: str | None = None
    """PostgreSQL URL (with pgvector). Unset: a private server is started in ``data_dir``."""
    db_pool_max: int = Field(default=10, ge=2, le=200)
    """Connections in the async pool."""

    # --- ingestion & retrieval -----------------------------------------------------------
    embedding_provider: Literal["local", "openai"] = "local"
    """``local``: sentence-transformers on CPU. ``openai``: the OpenAI embeddings API."""
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    """Model name stored with every vector; one index never mixes models."""
    embedding_batch_size: int = Field(default=64, ge=1, le=2048)
    """Texts per embedding call."""
    embedding_threads: int | None = Field(default=None, ge=1, le=256)
    """CPU threads the local model uses for a batch of documents (queries always use one).
    Unset: every core (``bench/results/ingest_speed.json`` compares it with half)."""
    chunk_tokens: int = Field(default=400, ge=32, le=8000)
    """Target chunk size in tokens. The local model reads only the first ~256 word-pieces of
    a chunk; chunks of 200 (which it reads whole) were measured and lost recall on the SEC
    10-Q set (documents answer questions, and longer chunks carry more of their context)."""
    chunk_overlap: int = Field(default=50, ge=0, le=2000)
    """Tokens repeated between consecutive chunks of one section."""
    max_file_mb: float = Field(default=50.0, gt=0)
    """Largest file ingest accepts, in MiB; a larger one fails with its size (not read)."""

    # --- LLM provider --------------------------------------------------------------------
    openai_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("PROPOSALS_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    """Key for OpenAI or any OpenAI-compatible server."""
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROPOSALS_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    """Base URL of an OpenAI-compatible server (``.../v1``)."""
    azure_openai_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROPOSALS_AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_ENDPOINT"),
    )
    """Azure OpenAI resource endpoint; with it the Azure client is used."""
    azure_openai_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROPOSALS_AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_KEY"),
    )
    """Azure OpenAI key."""
    azure_openai_api_version: str = Field(
        default="2024-10-21",
        validation_alias=AliasChoices("PROPOSALS_AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION"),
    )
    """Azure OpenAI API version."""
    llm_model: str = "gpt-4o-mini"
    """Default chat model (or Azure deployment name) for every node."""
    context_window: int = Field(default=32_768, ge=1024)
    """Tokens the model accepts per request, prompt and output together."""
    output_reserve: int = Field(default=4096, ge=64)
    """Tokens kept free for the answer when packing a request."""
    llm_concurrency_min: int = Field(default=4, ge=1)
    """Floor of the adaptive concurrency limit."""
    llm_concurrency_max: int = Field(default=1024, ge=1)
    """Ceiling of the adaptive concurrency limit (the HTTP pool is sized above it)."""
    llm_concurrency_start: int = Field(default=16, ge=1)
    """Where the adaptive limit starts."""
    llm_rpm: int | None = None
    """Requests-per-minute budget (also learned from ``x-ratelimit-*`` headers)."""
    llm_tpm: int | None = None
    """Tokens-per-minute budget (also learned from ``x-ratelimit-*`` headers). Known up front,
    it also shapes planning: a run whose lens calls fit in a minute of it packs its last lens
    batches smaller (``pipeline._evidence.pack_batches``)."""
    llm_timeout_s: float = Field(default=120.0, gt=0)
    """Deadline of one HTTP call to the provider."""
    llm_max_retries: int = Field(default=6, ge=0)
    """Retries of one call after the first attempt (retryable errors only)."""
    llm_schema_max_length: bool | None = None
    """Put ``maxLength`` on the strings of answer schemas (small local models then cannot
    ramble until the answer is cut off). Unset: yes, except for OpenAI's own API and Azure
    OpenAI, whose strict mode does not accept it; ``true``/``false`` force it."""
    llm_call_deadline_s: float = Field(default=900.0, gt=0)
    """Deadline of one whole LLM call: waiting for rate budget and a concurrency slot, every
    attempt and every backoff between them."""
    shared_budget: bool = False
    """Share one provider budget (concurrency, RPM, TPM) with every other process calling the
    same endpoint with this on, through the database (leases renewed by heartbeat). Turn it on
    for every worker when several share one quota; see docs/scale.md."""
    shared_budget_lease_s: float = Field(default=6.0, ge=1.0, le=300.0)
    """Seconds after which a process that stopped renewing its share (it died) loses it."""
    simulator_profile: str = "tier1"
    """Profile of the offline simulator used when no provider is configured."""
    simulator_url: str | None = None
    """Base URL (``.../v1``) of a simulator already running (``proposals simulate``), used
    instead of starting one per process: several workers then share one offline provider."""
    simulator_time_scale: float = Field(default=0.02, gt=0, le=10)
    """Wall seconds per simulated second for that simulator: 0.02 plays a provider's latency
    and rate-limit minute 50x faster (1.0 = real time)."""
    confirm_lens_items: int = Field(default=2000, ge=1)
    """A ``generate`` above this many lens items (themes x country-profile pairs x 4) asks
    first, or needs ``--yes`` (the reference run has 720)."""
    prompts_dir: Path | None = None
    """Folder whose ``*.txt`` templates override the built-in prompts of the same name."""

    # --- observability -------------------------------------------------------------------
    prices_file: Path | None = None
    """JSON or YAML file of model prices (USD per one million tokens) that override or add to
    the built-in table: ``{"my-model": {"input_per_1m": 0.5, "output_per_1m": 1.5}}``."""
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Inline price overrides, same shape as the file (``PROPOSALS_PRICES`` as JSON); they win
    over the file's."""
    trace_content: bool = False
    """Put prompt and completion text on LLM call spans (off: spans carry counts only)."""
    langfuse_host: str | None = None
    """Langfuse base URL; with both keys, spans go to its OTLP endpoint (``/api/public/otel``)."""
    langfuse_public_key: str | None = None
    """Langfuse public key (the Basic-auth user)."""
    langfuse_secret_key: str | None = None
    """Langfuse secret key (the Basic-auth password)."""

    # --- server --------------------------------------------------------------------------
    max_upload_mb: float = Field(default=50.0, gt=0)
    """Largest ``POST /v1/documents`` body the server accepts (413 above it)."""
    sse_heartbeat_s: float = Field(default=10.0, gt=0, le=15)
    """Seconds between heartbeat comments on an idle event stream (proxies close idle ones)."""
    api_key: str | None = None
    """Client side: the key ``generate --server`` / ``ingest --server`` send to a server."""

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def provider_configured(self) -> bool:
        """True when a real (or user-chosen) endpoint is configured, not the simulator."""
        return bool(self.openai_api_key or self.openai_base_url or self.azure_openai_endpoint)
