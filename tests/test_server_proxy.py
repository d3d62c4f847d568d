"""A run followed through a reverse proxy on loopback that cuts every connection 2 s after
it opened (a stand-in for an app service's request time limit): the run completes and the
client sees every event once, in order. Also ``generate --server`` / ``ingest --server`` as
real subprocesses with PROPOSALS_API_KEY."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from _server import serve_in_thread
from proposals.client import ProposalsClient
from proposals.config import Settings
from proposals.db import Database
from proposals.embeddings import Embedder
from proposals.keys import ApiKeys
from proposals.pipeline import Profile, ProposalRequest, RunOptions
from proposals.runs import RunFinished
from proposals.server import ServerOptions

DEADLINE_S = 240.0
CUT_AFTER_S = 2.0


class CuttingProxy:
    """TCP proxy to ``upstream_port``; every connection is closed ``CUT_AFTER_S`` after it
    was accepted, whatever it is doing. ``cuts`` counts connections still open at that time."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cuts = 0
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(client_r, up_w)),
            asyncio.create_task(self._pipe(up_r, client_w)),
        ]
        _, pending = await asyncio.wait(pipes, timeout=CUT_AFTER_S)
        if len(pending) == 2:
            self.cuts += 1
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        for writer in (client_w, up_w):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"http://127.0.0.1:{self.port}"


async def test_run_followed_through_a_proxy_that_cuts_every_request(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    # A provider slow enough that the run outlasts many 2 s windows.
    settings = corpus_settings.model_copy(
        update={"simulator_profile": "tier1", "simulator_time_scale": 0.3, "llm_timeout_s": 60}
    )
    request = ProposalRequest(
        brief="savings products for households",
        countries=["AR", "BR"],
        profiles=[Profile(name="young savers", description="urban, smartphone-first")],
        options=RunOptions(themes=3, proposals_per_pair=2),
    )
    options = ServerOptions(auth=False, workers=1, heartbeat_s=0.5)
    with serve_in_thread(settings, options, embedder=embedder) as live:
        proxy = CuttingProxy(live.port)
        async with proxy.running() as url, ProposalsClient(url) as client:
            record = await client.create_run(request)
            seqs: list[int] = []
            async with asyncio.timeout(DEADLINE_S):
                async for event in client.events(record.id):
                    seqs.append(event.seq)
            assert isinstance(event, RunFinished) and event.status == "completed"
            result = await client.proposals(record.id)
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            stored = (await http.get(f"/v1/runs/{record.id}")).json()["last_seq"]
    assert proxy.cuts >= 2  # the stream really was cut, more than once
    assert seqs == list(range(1, stored + 1))
    assert result.proposals and result.run_id == record.id


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proposals", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


async def test_generate_and_ingest_with_server_flag(
    corpus_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    async with await Database.open(corpus_settings) as db:
        _, key = await ApiKeys(db).create("local")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROPOSALS_", "OPENAI_"))}
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pension.md").write_text(
        "# Pension top-ups\n\nMicro pension top-ups by mobile for informal workers.\n"
    )
    (tmp_path / "docs" / "bad.pdf").write_bytes(b"not a pdf")
    options = ServerOptions(workers=1, heartbeat_s=1.0)
    with serve_in_thread(corpus_settings, options, embedder=embedder) as live:
        no_key = await asyncio.to_thread(
            _cli, ["ingest", "--server", live.url, "docs"], env, tmp_path
        )
        assert no_key.returncode == 2 and "401" in no_key.stderr
        assert "Traceback" not in no_key.stderr
        env["PROPOSALS_API_KEY"] = key
        ingested = await asyncio.to_thread(
            _cli, ["ingest", "--server", live.url, "docs", "--country", "AR"], env, tmp_path
        )
        assert ingested.returncode == 1, ingested.stderr  # one file failed, and said why
        assert "1 ingested" in ingested.stdout and "FAILED docs/bad.pdf" in ingested.stderr
        # The same file name in two country folders: two documents, each of its country.
        for cc in ("BR", "CL"):
            (tmp_path / "tree" / cc).mkdir(parents=True)
            (tmp_path / "tree" / cc / "pension.md").write_text(f"# Pensions {cc}\n\nTop-ups.\n")
        tree = await asyncio.to_thread(
            _cli, ["ingest", "--server", live.url, "tree"], env, tmp_path
        )
        assert tree.returncode == 0 and "2 ingested" in tree.stdout, tree.stderr
        async with ProposalsClient(live.url, api_key=key) as client:
            docs = await client.documents(q="pensions")
        assert sorted((d["country"], d["title"]) for d in docs) == [
            ("BR", "Pensions BR"),
            ("CL", "Pensions CL"),
        ]
        generated = await asyncio.to_thread(
            _cli,
            [
                "generate",
                "--server",
                live.url,
                "--brief",
                "pension products for informal workers",
                "--countries",
                "AR",
                "--profile",
                "street vendors: daily cash income",
                "--themes",
                "2",
                "--quiet",
                "--json",
                "out.json",
            ],
            env,
            tmp_path,
        )
        assert generated.returncode == 0, generated.stderr
        result = json.loads((tmp_path / "out.json").read_text())
        assert result["status"] == "completed" and result["proposals"]
        assert f"(on {live.url})" in generated.stderr
