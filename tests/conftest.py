"""Shared fixtures: an isolated environment, one embedded PostgreSQL for the whole session, and
the sample corpus ingested once (copied per test with ``CREATE DATABASE ... TEMPLATE``).

Each test that asks for ``database`` gets a fresh, migrated database on that server, dropped
afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proposals.config import Settings
from proposals.db import Database
from proposals.embeddings import Embedder, embedder_from_settings
from proposals.ingest import ingest

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"

_KEEP = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TIKTOKEN_CACHE_DIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "XDG_RUNTIME_DIR",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No developer's PROPOSALS_* / OPENAI_* / AZURE_* / OTEL_* variables leak into a test."""
    for key in list(os.environ):
        if key.startswith(("PROPOSALS_", "OPENAI_", "AZURE_OPENAI_", "OTEL_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.chdir(os.environ.get("PROPOSALS_TEST_CWD", os.getcwd()))
    yield


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One private PostgreSQL 16 + pgvector (pgserver) for the session."""
    import pgserver

    pgdata = tmp_path_factory.mktemp("pg") / "data"
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    yield server
    server.cleanup()


_counter = itertools.count()


@pytest.fixture
def database_url(pg_server: object) -> Iterator[str]:
    """URL of a brand-new empty database on the session server (dropped afterwards)."""
    name = f"t{next(_counter)}_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f"CREATE DATABASE {name};")  # type: ignore[attr-defined]
    yield pg_server.get_uri(name)  # type: ignore[attr-defined]
    with psycopg.connect(pg_server.get_uri("postgres"), autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings pointing at a fresh database and a private data folder."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """A fresh database, migrated, with an open pool."""
    db = await Database.open(settings)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """One loaded embedding model for the whole session."""
    return embedder_from_settings(Settings())


@pytest.fixture(scope="session")
async def corpus_template(
    pg_server: Any, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database holding the ingested sample corpus, used only as a template."""
    name = f"corpus_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("tpl"), database_url=pg_server.get_uri(name)
    )
    db = await Database.open(settings)
    try:
        report = await ingest([CORPUS], database=db, embedder=embedder)
        assert not report.failed
    finally:
        await db.close()
    return name


@pytest.fixture
def corpus_settings(pg_server: Any, corpus_template: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh copy of the corpus database; the simulator answers at once."""
    name = f"run_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f"CREATE DATABASE {name} TEMPLATE {corpus_template};")
    yield Settings(
        data_dir=tmp_path / "data",
        database_url=pg_server.get_uri(name),
        simulator_profile="unlimited",
        llm_timeout_s=5,
        llm_max_retries=6,
    )
    with psycopg.connect(pg_server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Ray cluster (loopback, 2 CPUs, no dashboard), started once for the tests
    that use it (one module today) and stopped after them: its daemons would otherwise sit
    beside the rest of the suite."""
    import logging

    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        runtime_env={
            "env_vars": {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        },
    )
    yield ray
    ray.shutdown()
