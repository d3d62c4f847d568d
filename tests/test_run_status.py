"""Honest run status (issue 8, item 5): an endpoint nobody listens at ends the run as
``failed`` with "cannot connect to URL" as its reason, before any call is spent."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from proposals.cli import main
from proposals.llm import GatewayConfig, LLMGateway, ProviderUnreachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_check_connection_names_the_url_and_the_reason() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    async with LLMGateway(GatewayConfig(base_url=url, api_key="k")) as gw:
        with pytest.raises(ProviderUnreachable) as caught:
            await gw.check_connection()
    assert str(caught.value) == f"cannot connect to {url}: connection refused"


def test_unreachable_provider_fails_the_run_with_its_url(
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setenv("PROPOSALS_DATABASE_URL", database_url)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    argv = ["--data-dir", str(tmp_path / "d")]
    code = main(
        [
            *argv,
            "generate",
            "--brief",
            "savings",
            "--countries",
            "AR",
            "--quiet",
            "--profile",
            "savers: small surpluses",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    reason = f"failed: cannot connect to {url}: connection refused"
    assert [line for line in err.splitlines() if "failed" in line][-1].endswith(reason), err
    assert "Traceback" not in err and "RetriesExhausted" not in err
    assert main([*argv, "runs", "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["status"] == "failed"
    assert run["error"] == f"cannot connect to {url}: connection refused"
