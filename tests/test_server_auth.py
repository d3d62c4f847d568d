"""The HTTP service's edges against a real uvicorn on loopback: health, auth (401), keys
stored hashed, no-auth only on loopback, 422 for bad bodies, 413 over the upload limit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from _embedder import HashEmbedder
from _server import LiveServer, serve_in_thread
from proposals.cli import main
from proposals.config import Settings
from proposals.db import Database
from proposals.keys import ApiKeys
from proposals.server import ServerOptions


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    with serve_in_thread(
        settings, ServerOptions(workers=0, max_upload_bytes=64 * 1024), embedder=HashEmbedder()
    ) as server:
        yield server


async def test_health_and_ready(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        docs = await client.get("/openapi.json")
        assert "/v1/documents" in docs.json()["paths"]


async def test_keys_are_required_and_stored_hashed(live: LiveServer, database: Database) -> None:
    record, key = await ApiKeys(database).create("acme", name="ci")
    async with httpx.AsyncClient(base_url=live.url) as client:
        missing = await client.get("/v1/meta")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.get("/v1/meta", headers={"Authorization": f"Bearer {key[:-2]}xx"})
        assert wrong.status_code == 401
        junk = await client.get("/v1/meta", headers={"Authorization": "Bearer nonsense"})
        assert junk.status_code == 401
        ok = await client.get("/v1/meta", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json()["tenant"] == "acme"
    async with database.pool.connection() as conn:
        cur = await conn.execute("SELECT key_hash FROM api_keys WHERE id = %s", (record.id,))
        row = await cur.fetchone()
    assert row is not None and row[0] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in row[0]
    assert await ApiKeys(database).revoke(record.id)
    async with httpx.AsyncClient(base_url=live.url) as client:
        revoked = await client.get("/v1/meta", headers={"Authorization": f"Bearer {key}"})
        assert revoked.status_code == 401


def test_keys_cli_prints_the_key_once(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPOSALS_DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("PROPOSALS_DATA_DIR", str(settings.data_dir))
    assert main(["keys", "create", "--tenant", "beta", "--name", "laptop"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("pk_") and "shown once" in out.err
    assert main(["keys", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert '"tenant": "beta"' in listed and key not in listed
    assert main(["keys", "create", "--tenant", "Bad Name"]) == 2
    assert "tenant 'Bad Name' is not valid" in capsys.readouterr().err


def test_no_auth_is_refused_off_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--no-auth", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only allowed on a loopback address" in err


async def test_no_auth_mode_is_the_local_tenant(settings: Settings) -> None:
    options = ServerOptions(auth=False, workers=0)
    with serve_in_thread(settings, options, embedder=HashEmbedder()) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            meta = await client.get("/v1/meta")
    assert meta.status_code == 200 and meta.json()["tenant"] == "local"


async def test_upload_limit_and_field_errors(live: LiveServer, database: Database) -> None:
    _, key = await ApiKeys(database).create("acme")
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=live.url, headers=auth, timeout=60) as client:
        big = await client.post(
            "/v1/documents", files={"files": ("big.txt", b"x" * (200 * 1024), "text/plain")}
        )
        assert big.status_code == 413 and "limit" in big.json()["detail"]

        async def chunked() -> object:
            boundary = b"--b\r\n"
            yield (
                boundary + b'Content-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n'
            )
            for _ in range(100):
                yield b"y" * 1024
            yield b"\r\n--b--\r\n"

        streamed = await client.post(
            "/v1/documents",
            content=chunked(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
        bad_country = await client.post(
            "/v1/documents",
            files={"files": ("a.md", b"# A\n\nsome text here", "text/markdown")},
            data={"country": "Atlantis"},
        )
        assert bad_country.status_code == 422
        [error] = bad_country.json()["detail"]
        assert error["loc"] == ["body", "country"] and "Atlantis" in error["msg"]
        no_files = await client.post("/v1/documents", data={"country": "AR"})
        assert no_files.status_code == 422
        assert no_files.json()["detail"][0]["loc"] == ["body", "files"]


async def test_upload_reports_each_file(live: LiveServer, database: Database) -> None:
    _, key = await ApiKeys(database).create("acme")
    auth = {"Authorization": f"Bearer {key}"}
    files = [
        (
            "files",
            ("savings.md", b"# Savings\n\nA savings account for households.", "text/markdown"),
        ),
        ("files", ("broken.pdf", b"not a pdf at all", "application/pdf")),
    ]
    async with httpx.AsyncClient(base_url=live.url, headers=auth, timeout=60) as client:
        first = await client.post("/v1/documents", files=files, data={"country": "AR"})
        again = await client.post("/v1/documents", files=files[:1], data={"country": "AR"})
    assert first.status_code == 200, first.text
    by_name = {f["name"]: f for f in first.json()["files"]}
    assert by_name["savings.md"]["status"] == "ingested"
    assert by_name["savings.md"]["chunks"] >= 1 and by_name["savings.md"]["document_id"]
    assert by_name["broken.pdf"]["status"] == "failed" and by_name["broken.pdf"]["reason"]
    assert again.json()["files"][0]["status"] == "unchanged"
    async with database.pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT tenant FROM chunks")
        assert [r[0] for r in await cur.fetchall()] == ["acme"]
