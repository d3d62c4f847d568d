"""The proposal pipeline end to end: real simulator over HTTP, embedded PostgreSQL, the
sample corpus ingested once per session and copied per test (``CREATE DATABASE ... TEMPLATE``).
"""

from __future__ import annotations

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
from proposals.pipeline import Profile, ProposalRequest, ProposalResult, RunOptions, render_markdown
from proposals.runs import RunEvent, RunFinished, Services, generate, open_services
from proposals.store import Store

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
PROFILES = [
    Profile(name="young savers", description="urban, smartphone-first, small surpluses"),
    Profile(name="rural families", description="seasonal income, agents and remittances"),
]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """One loaded embedding model for the whole session."""
    return embedder_from_settings(Settings())


@pytest.fixture(scope="session")
async def corpus_template(pg_server: Any, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding the ingested sample corpus, used only as a template."""
    name = f"corpus_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    settings = Settings(data_dir=tmp_path_factory.mktemp("tpl"), database_url=pg_server.get_uri(name))
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
        data_dir=tmp_path / "data", database_url=pg_server.get_uri(name),
        simulator_profile="unlimited", llm_timeout_s=5, llm_max_retries=6,
    )
    with psycopg.connect(pg_server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def services(corpus_settings: Settings, embedder: Embedder) -> AsyncIterator[Services]:
    async with open_services(corpus_settings, embedder=embedder) as svc:
        yield svc


def _request(**options: Any) -> ProposalRequest:
    return ProposalRequest(
        brief="savings and microinsurance products for households",
        countries=["ar", "BR"],
        profiles=PROFILES,
        variables={"channel": "mobile app", "risk appetite": "low"},
        options=RunOptions(**{"themes": 3, "proposals_per_pair": 3, **options}),
    )


async def _run(
    request: ProposalRequest, settings: Settings, services: Services, **kw: Any
) -> tuple[ProposalResult, list[RunEvent]]:
    events: list[RunEvent] = []
    async with generate(request, settings, services=services, **kw) as run:
        async for event in run.events():
            events.append(event)
        result = await run.result()
    return result, events


async def _check_citations(result: ProposalResult, services: Services) -> None:
    """Every citation is a real chunk of the proposal's country (or of a country-less doc)."""
    store: Store = services.store
    for p in result.proposals:
        assert p.citations, f"proposal {p.title!r} cites nothing"
        hits = {h.chunk_id: h for h in await store.get_chunks([c.chunk_id for c in p.citations])}
        for c in p.citations:
            assert c.chunk_id in hits, f"citation #{c.chunk_id} is not a stored chunk"
            real = hits[c.chunk_id].citation
            assert real.country in (None, p.country)
            assert (c.title, c.path, c.country) == (real.title, real.path, real.country)


async def test_end_to_end(corpus_settings: Settings, services: Services) -> None:
    result, events = await _run(_request(), corpus_settings, services)
    assert result.status == "completed", result.failed
    assert result.simulated
    assert len(result.themes) == 3
    pairs = {(p.country, p.profile) for p in result.proposals}
    assert pairs == {(c, p.name) for c in ("AR", "BR") for p in PROFILES}
    assert all(len(result.proposals_for(c, p)) <= 3 for c, p in pairs)
    assert {f.lens for f in result.findings} == {"market_fit", "regulation", "feasibility", "positioning"}
    await _check_citations(result, services)
    # events: numbered 1..n without gaps, last one carries the result, also stored in the log
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert isinstance(events[-1], RunFinished) and events[-1].result is not None
    types = {e.type for e in events}
    assert {"run_started", "node_started", "batch_started", "call", "proposal"} <= types
    assert events[-1].usage.calls == result.usage.calls > 0
    report = render_markdown(result)
    assert "SIMULATED" in report and "## AR" in report and "### young savers" in report
