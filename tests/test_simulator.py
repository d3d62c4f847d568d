"""The offline simulator over real loopback HTTP, through the openai SDK and raw httpx."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import sys
import time
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.lib._parsing._completions import type_to_response_format_param
from pydantic import BaseModel, Field, create_model

from proposals.errors import InputError
from proposals.simulator import (
    PROFILES,
    SimulatorProcess,
    get_profile,
    run_simulator,
    serve_in_thread,
)
from proposals.tokens import count_tokens

EVIDENCE = """Evidence:
[#12] Savings accounts in Argentina pay high nominal rates. Inflation erodes their value within months.
[#40] Households prefer dollar-linked products when regulation allows them to buy such products.
[#7] Mobile banking reaches most young adults in urban areas of the country.
[#105] Regulators require clear disclosure of fees on every retail savings product.
"""
MESSAGES = [
    {"role": "system", "content": "You design retail financial products and cite evidence."},
    {"role": "user", "content": EVIDENCE + "\nPropose savings products for young households."},
]

PROMPT_TEXT = "\n".join(m["content"] for m in MESSAGES)


class Idea(BaseModel):
    title: str
    rationale: str
    channel: Literal["branch", "mobile", "partner"]
    fit_score: float = Field(ge=0, le=1)
    priority: int = Field(ge=1, le=5)
    citations: list[int]
    chunk_refs: list[str]
    risks: list[str]


class Ideas(BaseModel):
    """Product ideas."""

    ideas: list[Idea] = Field(min_length=2, max_length=12)
    summary: str | None
    regulated: bool


def client_for(base_url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0, timeout=20)


async def test_json_schema_output_is_valid_and_grounded() -> None:
    async with run_simulator("unlimited") as sim:
        client = client_for(sim.base_url)
        result = await client.chat.completions.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Ideas
        )
        parsed = result.choices[0].message.parsed
        assert isinstance(parsed, Ideas)
        ids = {12, 40, 7, 105}
        cited = set()
        for idea in parsed.ideas:
            assert idea.citations and set(idea.citations) <= ids
            assert set(idea.chunk_refs) <= {str(i) for i in ids}
            cited |= set(idea.citations)
            # strings are the prompt's own words, not invented text
            assert idea.rationale.split(".")[0] in PROMPT_TEXT
            assert idea.title.lower() in PROMPT_TEXT.lower()  # a noun phrase, capitalised
        assert len(cited) >= 2
        usage = result.usage
        assert usage is not None
        assert usage.completion_tokens == count_tokens(result.choices[0].message.content or "")
        expected_prompt = 3 + sum(3 + count_tokens(m["content"]) for m in MESSAGES)
        assert usage.prompt_tokens == expected_prompt
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_strings_prefer_the_evidence_over_the_instructions() -> None:
    evidence_lines = [line for line in EVIDENCE.splitlines() if line.startswith("[#")]
    async with run_simulator("unlimited") as sim:
        client = client_for(sim.base_url)
        result = await client.chat.completions.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Ideas
        )
    parsed = result.choices[0].message.parsed
    assert parsed is not None
    for idea in parsed.ideas:
        for text in (idea.rationale, *idea.risks):
            first = text.split(".")[0]
            assert any(first in line for line in evidence_lines), text
        assert "Propose savings products" not in idea.rationale


async def test_list_lengths_vary_around_the_mean() -> None:
    class Names(BaseModel):
        names: list[str]

    lengths = []
    async with run_simulator("unlimited", list_mean=9) as sim:
        client = client_for(sim.base_url)
        for i in range(30):
            msgs = [*MESSAGES, {"role": "user", "content": f"Variant {i}."}]
            r = await client.chat.completions.parse(model="m", messages=msgs, response_format=Names)
            lengths.append(len(r.choices[0].message.parsed.names))  # type: ignore[union-attr]
    assert 7 <= sum(lengths) / len(lengths) <= 11
    assert len(set(lengths)) >= 3


async def test_same_request_same_output_other_seed_differs() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "Ideas", "schema": Ideas.model_json_schema(), "strict": False},
        },
    }
    async with (
        run_simulator("unlimited", seed=1) as a,
        run_simulator("unlimited", seed=2) as b,
        httpx.AsyncClient() as http,
    ):
        first = (await http.post(a.base_url + "/chat/completions", json=body)).json()
        again = (await http.post(a.base_url + "/chat/completions", json=body)).json()
        other = (await http.post(b.base_url + "/chat/completions", json=body)).json()
    text = first["choices"][0]["message"]["content"]
    assert text == again["choices"][0]["message"]["content"]
    assert text != other["choices"][0]["message"]["content"]
    Ideas.model_validate_json(other["choices"][0]["message"]["content"])


async def test_plain_text_and_json_object_modes() -> None:
    async with run_simulator("unlimited") as sim:
        client = client_for(sim.base_url)
        plain = await client.chat.completions.create(model="m", messages=MESSAGES)
        text = plain.choices[0].message.content or ""
        assert text and all(s.strip() in PROMPT_TEXT for s in re.split(r"\n\n|(?<=\.) ", text))
        obj = await client.chat.completions.create(
            model="m", messages=MESSAGES, response_format={"type": "json_object"}
        )
        assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


async def test_max_tokens_truncates_with_length_finish() -> None:
    async with run_simulator("unlimited") as sim:
        client = client_for(sim.base_url)
        full = await client.chat.completions.create(model="m", messages=MESSAGES)
        cut = await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=7)
    assert cut.choices[0].finish_reason == "length"
    assert full.choices[0].finish_reason == "stop"
    assert cut.usage is not None and cut.usage.completion_tokens == 7
    assert (full.choices[0].message.content or "").startswith(cut.choices[0].message.content)


async def test_stats_match_what_the_client_saw() -> None:
    async with run_simulator("unlimited") as sim:
        client = client_for(sim.base_url)
        results = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model="m", messages=[*MESSAGES, {"role": "user", "content": f"n{i}"}]
                )
                for i in range(20)
            ]
        )
        async with httpx.AsyncClient() as http:
            response = await http.get(sim.base_url.removesuffix("/v1") + "/sim/stats")
        stats = response.json()
        assert response.headers["x-simulator"] == "proposals"
        assert stats == sim.stats()
        assert stats["requests"] == stats["completed"] == 20
        assert stats["prompt_tokens"] == sum(r.usage.prompt_tokens for r in results)  # type: ignore[union-attr]
        assert stats["completion_tokens"] == sum(r.usage.completion_tokens for r in results)  # type: ignore[union-attr]
        assert stats["peak_in_flight"] >= 1 and stats["in_flight"] == 0
        async with httpx.AsyncClient() as http:
            await http.post(sim.base_url.removesuffix("/v1") + "/sim/reset")
        assert sim.stats()["requests"] == 0


async def test_models_list_is_labelled_simulated() -> None:
    async with run_simulator("tier1") as sim:
        models = await client_for(sim.base_url).models.list()
        assert models.data and all("simulated" in m.owned_by for m in models.data)


async def test_streaming_reassembles_to_the_same_content() -> None:
    async with run_simulator("unlimited") as sim:
        client = client_for(sim.base_url)
        kwargs = {
            "model": "m",
            "messages": MESSAGES,
            "response_format": type_to_response_format_param(Ideas),
        }
        plain = await client.chat.completions.create(**kwargs)
        stream = await client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        pieces, usage, finish = [], None, None
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        assert len(pieces) > 3
        assert "".join(pieces) == plain.choices[0].message.content
        assert finish == "stop"
        assert usage is not None and plain.usage is not None
        assert usage.completion_tokens == plain.usage.completion_tokens
        assert sim.stats()["streamed"] == 1
        async with httpx.AsyncClient() as http:
            raw = await http.post(
                sim.base_url + "/chat/completions",
                json={"model": "m", "messages": MESSAGES, "stream": True},
            )
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.text.rstrip().endswith("data: [DONE]")


async def test_context_length_exceeded_has_openai_shape() -> None:
    async with run_simulator("unlimited", context_window=300) as sim:
        client = client_for(sim.base_url)
        big = [{"role": "user", "content": EVIDENCE * 10}]
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="m", messages=big)
        error = info.value.body
        assert isinstance(error, dict)
        assert error["code"] == "context_length_exceeded"
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "messages"
        assert error["message"].startswith("This model's maximum context length is 300 tokens")
        # prompt alone fits, prompt + requested completion does not
        with pytest.raises(openai.BadRequestError, match="in the completion"):
            await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=250)
        ok = await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=50)
        assert ok.usage is not None and ok.usage.prompt_tokens + 50 <= 300
        assert sim.stats()["rejects"]["context_length"] == 2


async def test_rpm_limit_answers_429_with_retry_headers() -> None:
    # 60 RPM with a 10 s burst: a bucket of 10 requests refilled at one per second
    async with run_simulator("unlimited", rpm=60, burst_s=10) as sim, httpx.AsyncClient() as http:
        body = {"model": "m", "messages": MESSAGES}
        responses = [
            await http.post(sim.base_url + "/chat/completions", json=body) for _ in range(13)
        ]
        codes = [r.status_code for r in responses]
        assert codes == [200] * 10 + [429] * 3
        first_ok, limited = responses[0], responses[-1]
        assert first_ok.headers["x-ratelimit-limit-requests"] == "60"
        assert first_ok.headers["x-ratelimit-remaining-requests"] == "9"
        assert "x-ratelimit-reset-requests" in first_ok.headers
        assert 0 < int(limited.headers["retry-after-ms"]) <= 1000
        assert limited.headers["retry-after"] == "1"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert limited.headers["x-simulator"] == "proposals"
        stats = sim.stats()
        assert stats["rejects"]["rate_limit_rpm"] == 3 and stats["completed"] == 10
        # honouring retry-after-ms gets the next request through
        await asyncio.sleep(int(limited.headers["retry-after-ms"]) / 1000)
        again = await http.post(sim.base_url + "/chat/completions", json=body)
        assert again.status_code == 200


async def test_tpm_limit_counts_prompt_and_max_tokens() -> None:
    async with run_simulator("unlimited", tpm=6000, burst_s=10) as sim:  # bucket of 1000
        client = client_for(sim.base_url)
        await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=700)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=700)
        assert info.value.response.headers["x-ratelimit-limit-tokens"] == "6000"
        stats = sim.stats()
        assert stats["rejects"]["rate_limit_tpm"] == 1
        # the budget was charged the estimate (prompt + max_tokens), not the tokens produced
        assert stats["charged_tokens"] == stats["prompt_tokens"] + 700
        assert stats["completion_tokens"] < 700


async def test_quota_shaped_profiles_follow_their_published_ratios() -> None:
    azure = get_profile("azure-240k")
    assert (azure.tpm, azure.rpm, azure.max_connections) == (240_000, 1_440, None)
    assert (get_profile("openai-tier1-mini").rpm, get_profile("openai-tier1-mini").tpm) == (
        500,
        200_000,
    )
    assert get_profile("openai-tier2-mini").tpm == 2_000_000
    # a 10-second window of 1,440 RPM admits 240 requests at once, then answers 429
    # (time_scale 100 stretches the minute so the bucket does not refill during the test)
    async with (
        run_simulator(azure, ttft_s=0, per_token_s=0, time_scale=100) as sim,
        httpx.AsyncClient() as http,
    ):
        # (short requests: 240 of them stay well under the 40,000-token TPM bucket)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        codes = [
            (await http.post(sim.base_url + "/chat/completions", json=body)).status_code
            for _ in range(242)
        ]
        assert codes.count(200) == 240 and codes[-2:] == [429, 429]


async def _until(condition: Any, deadline_s: float = 30.0) -> None:
    """Poll ``condition()`` until true; fail loudly after a generous deadline."""
    give_up = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < give_up, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def test_connection_cap_resets_connections_beyond_it() -> None:
    async with run_simulator("unlimited", max_connections=3) as sim:
        request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
        held = []
        for _ in range(3):  # three keep-alive connections that stay open
            reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
            writer.write(request)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            held.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(request)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()
        # control requests still get through while the cap is full
        async with httpx.AsyncClient() as http:
            response = await http.get(sim.base_url.removesuffix("/v1") + "/sim/stats")
        stats = response.json()
        assert stats["rejects"]["connection_refused"] == 1
        assert stats["connections"] == 3 and stats["peak_connections"] == 3
        # a naive client firing many requests at once meets connection errors
        client = client_for(sim.base_url)
        results = await asyncio.gather(
            *[client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(10)],
            return_exceptions=True,
        )
        assert all(isinstance(r, openai.APIConnectionError) for r in results)
        for w in held:
            w.close()
        await _until(lambda: sim.stats()["connections"] == 0)  # the server saw them go
        ok = await client.chat.completions.create(model="m", messages=MESSAGES)
        assert ok.choices[0].message.content
        await client.close()


async def test_faults_are_injected_and_counted() -> None:
    rates = {"fault_500": 0.2, "fault_503": 0.2, "fault_reset": 0.2}
    seen = {"500": 0, "503": 0, "reset": 0, "ok": 0}
    async with run_simulator("unlimited", seed=3, **rates) as sim:
        for i in range(60):
            body = {"model": "m", "messages": MESSAGES, "stream": i % 2 == 0}
            async with httpx.AsyncClient(timeout=5) as http:
                try:
                    response = await http.post(sim.base_url + "/chat/completions", json=body)
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    seen["reset"] += 1
                    continue
            if response.status_code == 200:
                seen["ok"] += 1
            else:
                seen[str(response.status_code)] += 1
                assert response.json()["error"]["type"] == "server_error"
        stats = sim.stats()
    assert all(seen[k] > 0 for k in seen), seen
    assert stats["rejects"]["fault_500"] == seen["500"]
    assert stats["rejects"]["fault_503"] == seen["503"]
    assert stats["rejects"]["fault_reset"] == seen["reset"]
    assert stats["completed"] == seen["ok"] and stats["requests"] == 60


async def test_a_reset_starts_the_fault_sequence_over() -> None:
    # Runs compared after a reset (bench/versus.py) must meet the same faults in order.
    async def statuses(base_url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=5) as http:
            return [
                (await http.post(base_url + "/chat/completions", json=body)).status_code
                for body in [{"model": "m", "messages": MESSAGES}] * 30
            ]

    async with run_simulator("unlimited", seed=5, fault_500=0.3) as sim:
        first = await statuses(sim.base_url)
        further = await statuses(sim.base_url)
        async with httpx.AsyncClient() as http:
            await http.post(sim.base_url.removesuffix("/v1") + "/sim/reset")
        again = await statuses(sim.base_url)
    assert 500 in first and 200 in first
    assert further != first  # without a reset the sequence goes on
    assert again == first


async def test_stall_outlasts_the_client_timeout() -> None:
    async with run_simulator("unlimited", fault_stall=1.0, stall_s=30) as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=0.5)
        with pytest.raises(openai.APITimeoutError):  # the stall (30 s) outlasts 0.5 s
            await client.chat.completions.create(model="m", messages=MESSAGES)
        await client.close()
        assert sim.stats()["rejects"]["fault_stall"] == 1
        # The server notices the client left and frees the connection.
        await _until(lambda: sim.stats()["connections"] == 0)


async def test_latency_model_scales_and_does_not_serialise() -> None:
    async with run_simulator("unlimited", ttft_s=2.0, per_token_s=0.01, time_scale=0.1) as sim:
        client = client_for(sim.base_url)
        started = time.monotonic()
        results = await asyncio.gather(
            *[
                client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=20)
                for _ in range(40)
            ]
        )
        elapsed = time.monotonic() - started
        expected = sim.profile.latency_s(20)  # (2.0 + 0.2) * 0.1
        assert all(r.usage.completion_tokens == 20 for r in results)  # type: ignore[union-attr]
        assert expected <= elapsed  # each call waited its modelled latency...
        assert sim.stats()["peak_in_flight"] >= 20  # ...and they did so side by side


async def test_azure_style_deployment_path() -> None:
    async with run_simulator("unlimited") as sim:
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=sim.endpoint, api_key="sim", api_version="2024-10-21", max_retries=0
        )
        result = await client.chat.completions.parse(
            model="my-deployment", messages=MESSAGES, response_format=Ideas
        )
        assert result.model == "my-deployment"
        assert isinstance(result.choices[0].message.parsed, Ideas)
        await client.close()


def test_profiles_and_theoretical_rps() -> None:
    assert set(PROFILES) >= {"tier1", "tier2", "flaky", "unlimited"}
    tier1 = get_profile("tier1")
    # 2000 prompt + 500 output tokens: TPM allows 2e6/60/2500 = 13.3/s, RPM 33.3/s,
    # 100 connections / (0.6 + 500 * 0.015) s = 12.3/s -> connections bind
    assert tier1.theoretical_rps(2000, 500) == pytest.approx(100 / 8.1)
    assert tier1.theoretical_rps(20_000, 10) == pytest.approx(2e6 / 60 / 20_010)
    fast = get_profile("tier1", time_scale=0.01)
    assert fast.theoretical_rps(2000, 500) == pytest.approx(100 * tier1.theoretical_rps(2000, 500))
    assert get_profile("unlimited").theoretical_rps(1000, 1000) == float("inf")
    assert get_profile("tier2").theoretical_rps(2000, 500) > tier1.theoretical_rps(2000, 500)
    assert get_profile("flaky").fault_500 > 0 and get_profile("flaky").rpm == tier1.rpm
    assert get_profile("tier1", rpm=600, max_connections=50).rpm == 600
    with pytest.raises(InputError):
        get_profile("tier9")
    with pytest.raises(InputError):
        get_profile("tier1", no_such_field=1)


def test_serve_in_thread_for_synchronous_code() -> None:
    with serve_in_thread("unlimited") as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
        result = client.chat.completions.create(model="m", messages=MESSAGES)
        assert result.choices[0].message.content
        assert sim.stats()["completed"] == 1


def test_simulator_process_serves_and_reports_stats() -> None:
    with SimulatorProcess("tier1", time_scale=0.01, rpm=120) as sim:
        response = httpx.post(
            sim.base_url + "/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "120"
        stats = sim.stats()
        assert stats["profile"] == "tier1" and stats["completed"] == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(sim.base_url + "/models", timeout=2)


def test_cli_announces_a_labelled_simulator() -> None:
    command = [
        sys.executable,
        "-m",
        "proposals",
        "simulate",
        "--port",
        "0",
        "--profile",
        "unlimited",
        "--time-scale",
        "0.5",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        base_url = re.search(r"http://127\.0\.0\.1:\d+/v1", first)
        assert base_url is not None
        assert "SIMULATOR" in second and "simulated" in second
        response = httpx.get(base_url.group(0) + "/models", timeout=5)
        assert response.headers["x-simulator"] == "proposals"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        if proc.stdout is not None:
            proc.stdout.close()


async def test_recursive_schema_terminates() -> None:
    schema = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "required": ["node"],
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["label", "children", "next"],
            }
        },
    }
    body = {
        "model": "m",
        "messages": MESSAGES,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "Tree", "schema": schema},
        },
    }
    async with run_simulator("unlimited") as sim, httpx.AsyncClient() as http:
        response = await http.post(sim.base_url + "/chat/completions", json=body)
    tree = json.loads(response.json()["choices"][0]["message"]["content"])
    assert isinstance(tree["node"]["label"], str)


def _random_model(rng: random.Random, depth: int = 0) -> type[BaseModel]:
    """A pydantic model of randomly chosen field types (nested models, bounds, options)."""
    choices: list[Any] = [
        (str, ...),
        (int, ...),
        (float, ...),
        (bool, ...),
        (Literal["low", "mid", "high"], ...),
        (list[str], ...),
        (str | None, ...),
        (int, Field(ge=-3, le=3)),
        (float, Field(gt=0, lt=1)),
        (list[str], Field(min_length=2, max_length=4)),
        (list[int], Field(max_length=1)),
    ]
    if depth < 2:
        choices += [
            (_random_model(rng, depth + 1), ...),
            (list[_random_model(rng, depth + 1)], ...),
            (_random_model(rng, depth + 1) | None, ...),
        ]
    fields: dict[str, Any] = {f"f{i}": rng.choice(choices) for i in range(rng.randint(1, 5))}
    fields["citations"] = (list[int], ...)
    return create_model(f"M{depth}_{rng.randrange(10**6)}", **fields)


async def test_random_models_always_validate() -> None:
    rng = random.Random(7)
    async with run_simulator("unlimited", list_mean=3) as sim:
        client = client_for(sim.base_url)
        for _ in range(25):
            model = _random_model(rng)
            result = await client.chat.completions.parse(
                model="m", messages=MESSAGES, response_format=model
            )
            parsed = result.choices[0].message.parsed
            assert isinstance(parsed, model)
            assert set(parsed.citations) <= {12, 40, 7, 105}  # type: ignore[attr-defined]


async def test_embeddings_are_deterministic_and_count_against_the_quota() -> None:
    from proposals.llm import GatewayConfig, LLMGateway

    async with run_simulator("unlimited", rpm=60, time_scale=1.0, burst_s=2) as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        texts = ["home insurance against floods", "flood insurance for the home", "football"]
        first = await client.embeddings.create(model="text-embedding-3-small", input=texts)
        assert [len(d.embedding) for d in first.data] == [1536] * 3
        assert first.usage.prompt_tokens == sum(count_tokens(t) for t in texts)
        short = await client.embeddings.create(model="m", input=texts[0], dimensions=32)
        assert len(short.data[0].embedding) == 32
        v = [d.embedding for d in first.data]
        dot = [sum(a * b for a, b in zip(v[0], v[i], strict=True)) for i in (1, 2)]
        assert dot[0] > dot[1] + 0.3  # shared words are near
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="m", input=[""])
        # 60 RPM with a 2 s burst: a third request at once is refused.
        with pytest.raises(openai.RateLimitError):
            await client.embeddings.create(model="m", input="again")
        stats = sim.stats()
        assert stats["embeddings"] == 2 and stats["rejects"]["rate_limit_rpm"] == 1
        # Through a gateway: the refusal is waited out and retried, vectors unchanged.
        config = GatewayConfig(base_url=sim.base_url, api_key="k", simulated=True)
        async with LLMGateway(config) as gateway:
            again = await gateway.embed(texts, model="text-embedding-3-small")
        assert again.vectors == v and again.prompt_tokens == first.usage.prompt_tokens
        assert gateway.stats().retries_by_cause.get("rate_limit", 0) >= 1
        await client.close()
