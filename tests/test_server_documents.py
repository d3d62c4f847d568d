"""Documents, search and chunks over HTTP (real uvicorn on loopback): each tenant sees only
its own; another tenant's id is a 404, like a missing one; bad filters are 422 by field."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _embedder import HashEmbedder
from _server import LiveServer, serve_in_thread
from proposals.config import Settings
from proposals.db import Database
from proposals.keys import ApiKeys
from proposals.server import ServerOptions

_SAVINGS = b"# Savings pockets\n\nA quillango savings pocket for households, paid by mobile.\n"
_LOANS = b"# Crop loans\n\nSeasonal crop loans for smallholder families, repaid at harvest.\n"


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    with serve_in_thread(settings, ServerOptions(workers=0), embedder=HashEmbedder()) as server:
        yield server


async def _client(live: LiveServer, database: Database, tenant: str) -> httpx.AsyncClient:
    _, key = await ApiKeys(database).create(tenant)
    return httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


async def test_documents_search_and_chunks_per_tenant(live: LiveServer, database: Database) -> None:
    async with (
        await _client(live, database, "acme") as acme,
        await _client(live, database, "beta") as beta,
    ):
        up = await acme.post(
            "/v1/documents",
            files=[
                ("files", ("savings.md", _SAVINGS, "text/markdown")),
                ("files", ("loans.md", _LOANS, "text/markdown")),
            ],
            data={"country": "AR", "doc_type": "product_description"},
        )
        assert [f["status"] for f in up.json()["files"]] == ["ingested", "ingested"]
        same_name = await beta.post(
            "/v1/documents", files={"files": ("savings.md", b"# Other\n\nbeta's own text.\n")}
        )
        assert same_name.json()["files"][0]["status"] == "ingested"

        docs = (await acme.get("/v1/documents")).json()["documents"]
        assert sorted(d["title"] for d in docs) == ["Crop loans", "Savings pockets"]
        assert {d["country"] for d in docs} == {"AR"} and all(d["chunks"] >= 1 for d in docs)
        filtered = await acme.get("/v1/documents", params={"q": "crop"})
        assert [d["title"] for d in filtered.json()["documents"]] == ["Crop loans"]
        [beta_doc] = (await beta.get("/v1/documents")).json()["documents"]
        assert beta_doc["title"] == "Other"

        hits = (await acme.get("/v1/search", params={"q": "quillango savings", "k": 5})).json()
        titles = {h["citation"]["title"] for h in hits["hits"]}
        assert "Savings pockets" in titles and "Other" not in titles
        beta_hits = (await beta.get("/v1/search", params={"q": "quillango savings"})).json()
        assert {h["citation"]["title"] for h in beta_hits["hits"]} <= {"Other"}
        chunk_id = hits["hits"][0]["chunk_id"]
        own = await acme.get(f"/v1/chunks/{chunk_id}")
        assert own.status_code == 200 and own.json()["citation"]["country"] == "AR"
        assert (await beta.get(f"/v1/chunks/{chunk_id}")).status_code == 404
        assert (await acme.get("/v1/chunks/999999")).status_code == 404

        assert (await acme.delete(f"/v1/documents/{beta_doc['id']}")).status_code == 404
        assert (await beta.delete(f"/v1/documents/{beta_doc['id']}")).status_code == 204
        assert (await beta.delete(f"/v1/documents/{beta_doc['id']}")).status_code == 404
        assert (await beta.get("/v1/documents")).json()["documents"] == []
        assert len((await acme.get("/v1/documents")).json()["documents"]) == 2


async def test_bad_filters_name_their_field(live: LiveServer, database: Database) -> None:
    async with await _client(live, database, "acme") as acme:
        for path, params, loc in (
            ("/v1/search", {"q": "x", "country": "Narnia"}, ["query", "country"]),
            ("/v1/search", {"q": "x", "doc_type": "poem"}, ["query", "doc_type"]),
            ("/v1/search", {"q": "x", "k": "0"}, ["query", "k"]),
            ("/v1/search", {}, ["query", "q"]),
            ("/v1/documents", {"doc_type": "poem"}, ["query", "doc_type"]),
        ):
            answer = await acme.get(path, params=params)
            assert answer.status_code == 422, (path, params)
            assert isinstance(answer.json()["detail"], list), answer.json()
            assert answer.json()["detail"][0]["loc"] == loc, answer.json()
        assert (await acme.get("/v1/documents/abc")).status_code == 405
        assert (await acme.delete("/v1/documents/abc")).status_code == 422


async def test_same_file_name_for_two_countries_is_two_documents(
    live: LiveServer, database: Database, settings: Settings
) -> None:
    async with await _client(live, database, "acme") as acme:
        for country, body in (("AR", _SAVINGS), ("BR", _LOANS)):
            up = await acme.post(
                "/v1/documents", files={"files": ("report.md", body)}, data={"country": country}
            )
            assert up.json()["files"][0]["status"] == "ingested", up.text
        again = await acme.post(
            "/v1/documents", files={"files": ("report.md", _SAVINGS)}, data={"country": "AR"}
        )
        assert again.json()["files"][0]["status"] == "unchanged"
        # A folder upload sends relative paths: the folders label the file as on disk.
        tree = await acme.post(
            "/v1/documents",
            files=[
                ("files", ("corpus/CL/report.md", b"# Chile\n\nA Chilean note.\n")),
                ("files", ("../escape.md", b"# Out\n\nnot allowed\n")),
                ("files", (".hidden.md", b"# Hidden\n\nnot allowed\n")),
            ],
        )
        outcome = {f["name"]: f["status"] for f in tree.json()["files"]}
        assert outcome == {
            "corpus/CL/report.md": "ingested",
            "../escape.md": "failed",
            ".hidden.md": "failed",
        }
        docs = (await acme.get("/v1/documents")).json()["documents"]
        by_country = {d["country"]: d["title"] for d in docs}
        assert by_country == {"AR": "Savings pockets", "BR": "Crop loans", "CL": "Chile"}
        uploads = (settings.data_dir / "uploads" / "acme").resolve()
        assert all(Path(d["path"]).is_relative_to(uploads) for d in docs)
        assert not (settings.data_dir / "uploads" / "escape.md").exists()

        [ar] = [d for d in docs if d["country"] == "AR"]
        assert (await acme.delete(f"/v1/documents/{ar['id']}")).status_code == 204
        assert not await asyncio.to_thread(Path(ar["path"]).exists)
        left = (await acme.get("/v1/documents")).json()["documents"]
        assert sorted(d["country"] for d in left) == ["BR", "CL"]
