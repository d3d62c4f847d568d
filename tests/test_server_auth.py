"""The HTTP service's edges against a real uvicorn on loopback: health, auth (401), keys
stored hashed, no-auth only on loopback, 422 for bad bodies, 413 over the upload limit."""

from __future__ import annotations

import asyncio
import contextlib
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


async def _raw_post(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request on a raw socket, stopping the body as soon as an answer arrives (so the
    server's early 413 cannot race the client's send), and return the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    answer = asyncio.create_task(reader.readline())
    for part in body_parts:
        if answer.done():
            break
        writer.write(part)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(0)
    status = await asyncio.wait_for(answer, 60)
    writer.close()
    return status


async def test_upload_limit_and_field_errors(live: LiveServer, database: Database) -> None:
    _, key = await ApiKeys(database).create("acme")
    auth = {"Authorization": f"Bearer {key}"}
    boundary = b"--b\r\n"
    part_head = boundary + b'Content-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n'
    headers = (
        b"POST /v1/documents HTTP/1.1\r\nHost: t\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=b\r\n"
    )
    # declared too large: refused from the headers (the body is read and dropped first, so
    # that the client, still sending, gets the 413 rather than a reset connection)
    declared = await _raw_post(
        live.port,
        headers + f"Content-Length: {200 * 1024}\r\n\r\n".encode(),
        [b"x" * 1024 for _ in range(200)],
    )
    assert declared.startswith(b"HTTP/1.1 413")
    # streamed (chunked, no length): refused once the body passes the limit
    chunks = [b"%x\r\n%s\r\n" % (len(part_head), part_head)]
    # Just past the limit (64 KiB), so the server has read all that was sent when it
    # answers and closes: unread bytes would make its close a reset that can hide the 413.
    chunks += [b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(66)]
    streamed = await _raw_post(live.port, headers + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert streamed.startswith(b"HTTP/1.1 413")
    async with httpx.AsyncClient(base_url=live.url, headers=auth, timeout=60) as client:
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
