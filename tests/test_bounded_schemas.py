"""Answer schemas bounded for small local models (issue 8, item 8): citation ids as an enum of
the ids shown in the call's evidence, lists with ``maxItems``, strings with ``maxLength``
(left out for endpoints whose strict mode refuses it), and the simulator answering within
those bounds through the real OpenAI client over loopback."""

from __future__ import annotations

import json
from typing import Any

from proposals.config import Settings
from proposals.llm import GatewayConfig, LLMGateway
from proposals.pipeline._schemas import (
    CITATIONS_MAX,
    AnswerSchema,
    findings_schema,
    proposals_schema,
    themes_schema,
)
from proposals.simulator import run_simulator


def _schema(schema: AnswerSchema, config: GatewayConfig | None = None) -> dict[str, Any]:
    fmt = schema.response_format
    if config is not None:
        fmt = config.fit_format(fmt)
    out: dict[str, Any] = fmt["json_schema"]["schema"]
    return out


def _keys(node: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in a JSON document."""
    if isinstance(node, dict):
        found = [node[key]] if key in node else []
        return found + [v for child in node.values() for v in _keys(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in _keys(child, key)]
    return []


def test_schemas_bound_citations_lists_and_strings() -> None:
    themes = _schema(themes_schema(4, (3, 7, 11)))
    assert themes["properties"]["themes"]["maxItems"] == 4
    # The count is asked for in the schema (the simulator, like a model, honours it), but an
    # answer with fewer themes still parses: the node asks again for what is missing.
    assert themes["properties"]["themes"]["minItems"] == 4
    short = {"themes": [{"title": "A", "description": "B", "citations": [3]}]}
    assert len(themes_schema(4, (3,)).model.model_validate(short).themes) == 1  # type: ignore[attr-defined]
    theme = themes["$defs"]["ThemeOut"]["properties"]
    assert theme["citations"]["items"] == {"type": "integer", "enum": [3, 7, 11]}
    assert theme["citations"]["maxItems"] == 3
    assert theme["title"]["maxLength"] == 120 and theme["description"]["maxLength"] > 120

    many = tuple(range(1, 40))
    proposal = _schema(proposals_schema(5, many))["$defs"]["ProposalOut"]["properties"]
    assert proposal["citations"]["maxItems"] == CITATIONS_MAX
    assert proposal["citations"]["items"]["enum"] == list(many)
    for name in ("key_features", "risks"):
        assert proposal[name]["maxItems"] == 6 and proposal[name]["items"]["maxLength"] == 240
    strings = [k for k, v in proposal.items() if v.get("type") == "string"]
    assert strings and all("maxLength" in proposal[k] for k in strings)

    # A call that showed no evidence may cite nothing (an empty enum is not valid JSON Schema).
    findings = _schema(findings_schema(2, 3, ()))
    assert findings["properties"]["item_2"]["maxItems"] == 3
    cited = findings["$defs"]["FindingOut"]["properties"]["citations"]
    assert cited["maxItems"] == 0 and "enum" not in cited["items"]
    # A caller that names no ids (None) bounds only how many.
    free = _schema(findings_schema(2, 3))["$defs"]["FindingOut"]["properties"]["citations"]
    assert free["maxItems"] == CITATIONS_MAX and "enum" not in free["items"]


def test_calls_of_one_shape_share_the_parsing_model_and_differ_only_in_the_ids() -> None:
    first, second = findings_schema(3, 4, (2, 5)), findings_schema(3, 4, (7, 8, 9))
    assert first.model is second.model  # no pydantic model built per call
    one, two = _schema(first), _schema(second)
    assert _keys(one, "enum") == [[2, 5]] and _keys(two, "enum") == [[7, 8, 9]]
    finding = two["$defs"]["FindingOut"]["properties"]
    finding["citations"] = one["$defs"]["FindingOut"]["properties"]["citations"]
    assert one == two
    # The shared template is not modified by patching.
    assert _keys(_schema(findings_schema(3, 4)), "enum") == []
    # Bounds are stated, not validated: an answer citing an id not shown still parses.
    answer = first.model.model_validate_json('{"item_1": [{"statement": "x", "citations": [99]}]}')
    assert answer.item_1[0].citations == [99]  # type: ignore[attr-defined]


def test_max_length_is_sent_only_where_strict_mode_accepts_it() -> None:
    assert not GatewayConfig().sends_max_length  # api.openai.com
    assert not GatewayConfig(base_url="https://api.openai.com/v1/").sends_max_length
    assert not GatewayConfig(azure_endpoint="https://x.openai.azure.com").sends_max_length
    assert GatewayConfig(base_url="http://127.0.0.1:8080/v1").sends_max_length  # llama.cpp
    assert GatewayConfig(base_url="http://127.0.0.1:1/v1", simulated=True).sends_max_length
    forced = GatewayConfig.from_settings(Settings(llm_schema_max_length=True))
    assert forced.sends_max_length
    off = GatewayConfig.from_settings(
        Settings(llm_schema_max_length=False), base_url="http://localhost:11434/v1"
    )
    assert not off.sends_max_length

    model = proposals_schema(3, (5, 9))
    stripped = _schema(model, GatewayConfig())  # as sent to api.openai.com
    assert _keys(stripped, "maxLength") == []
    assert _keys(stripped, "enum") == [[5, 9]] and _keys(stripped, "maxItems")
    assert _keys(_schema(model, GatewayConfig(base_url="http://127.0.0.1:8000/v1")), "maxLength")


async def test_the_simulator_answers_within_the_bounds() -> None:
    evidence = "\n".join(
        f"[#{i}] Household savings accounts grew {i} percent in rural areas last year. "
        "Agents opened most of them through mobile wallets with no fees."
        for i in (3, 7)
    )
    async with run_simulator("unlimited") as sim:
        config = GatewayConfig(base_url=sim.base_url, api_key="sim", simulated=True)
        async with LLMGateway(config) as gw:
            schema = proposals_schema(3, (3, 7))
            limits = _schema(schema)["$defs"]["ProposalOut"]["properties"]
            for attempt in range(6):
                prompt = f"Attempt {attempt}. Propose products.\n\nEvidence:\n{evidence}"
                result = await gw.complete(
                    prompt,
                    schema=schema.model,
                    schema_format=schema.response_format,
                    max_tokens=2000,
                )
                answer = json.loads(result.text)
                assert len(answer["proposals"]) <= 3
                for proposal in answer["proposals"]:
                    assert set(proposal["citations"]) <= {3, 7}
                    assert len(proposal["citations"]) <= 2
                    assert len(proposal["key_features"]) <= 6
                    for name, spec in limits.items():
                        if spec.get("type") == "string":
                            assert len(proposal[name]) <= spec["maxLength"], name
