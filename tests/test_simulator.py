"""The offline simulator over real loopback HTTP, through the openai SDK and raw httpx."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

import httpx
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from proposals.simulator import (
    run_simulator,
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
            assert idea.title in PROMPT_TEXT
        assert len(cited) >= 2
        usage = result.usage
        assert usage is not None
        assert usage.completion_tokens == count_tokens(result.choices[0].message.content or "")
        expected_prompt = 3 + sum(3 + count_tokens(m["content"]) for m in MESSAGES)
        assert usage.prompt_tokens == expected_prompt
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_list_lengths_vary_around_the_mean() -> None:
    class Names(BaseModel):
        names: list[str]

    lengths = []
    async with run_simulator("unlimited", list_mean=9) as sim:
        client = client_for(sim.base_url)
        for i in range(30):
            msgs = [*MESSAGES, {"role": "user", "content": f"Variant {i}."}]
            r = await client.chat.completions.parse(
                model="m", messages=msgs, response_format=Names
            )
            lengths.append(len(r.choices[0].message.parsed.names))  # type: ignore[union-attr]
    assert 7 <= sum(lengths) / len(lengths) <= 11
    assert len(set(lengths)) >= 3


async def test_same_request_same_output_other_seed_differs() -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES,
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "Ideas", "schema": Ideas.model_json_schema(), "strict": False}}}
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
        results = await asyncio.gather(*[
            client.chat.completions.create(
                model="m", messages=[*MESSAGES, {"role": "user", "content": f"n{i}"}])
            for i in range(20)
        ])
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
