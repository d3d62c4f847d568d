"""The answer schemas sent with each call, bounded for small local models.

A model decoding under a grammar (llama.cpp, Ollama, vLLM with structured outputs) emits what
the schema allows; an unbounded ``list[int]`` or ``str`` lets a small model cite ids that do not
exist or repeat itself until the answer is cut off. So every schema states: citation ids as an
``enum`` of the ids shown in that call's evidence, lists with ``maxItems``, strings with
``maxLength``. The bounds are stated, not validated: an answer that breaks one is still parsed
and normalised in code (unknown ids dropped), as before. The gateway drops ``maxLength`` for
endpoints whose strict mode does not accept it (see ``GatewayConfig.schema_max_length``).

Since the bounds are not validated, one pydantic model per shape parses every answer; only the
JSON schema sent differs per call (the ids shown), patched into a copy of the shape's cached
``response_format``. Building a pydantic model per call cost ~2-2.5 ms of CPU per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic.config import JsonDict

from ..llm import json_schema_format
from ._models import FindingOut, ProposalOut, ThemeOut

__all__ = [
    "CITATIONS_MAX",
    "AnswerSchema",
    "findings_schema",
    "proposals_schema",
    "themes_schema",
]

CITATIONS_MAX = 8
"""Citations one theme, finding or proposal may list."""
_TITLE = 120
_TEXT = 800
_LIST = 6
_LIST_ITEM = 240


def _text(limit: int = _TEXT, default: str | None = None) -> Any:
    extra: JsonDict = {"maxLength": limit}
    if default is None:
        return (str, Field(json_schema_extra=extra))
    return (str, Field(default=default, json_schema_extra=extra))


def _strings() -> Any:
    items: JsonDict = {"type": "string", "maxLength": _LIST_ITEM}
    return (
        list[str],
        Field(default_factory=list, json_schema_extra={"maxItems": _LIST, "items": items}),
    )


def _citations() -> Any:
    """Any ids, at most ``CITATIONS_MAX`` (the call's own ids are patched into the schema)."""
    extra: JsonDict = {"maxItems": CITATIONS_MAX, "items": {"type": "integer"}}
    return (list[int], Field(default_factory=list, json_schema_extra=extra))


def _bounded_list(item: Any, max_items: int, min_items: int = 0) -> Any:
    extra: JsonDict = {"maxItems": max_items}
    if min_items:
        # A hint to the model (the count the prompt asks for), not checked when parsing: an
        # answer with fewer is still used, and the node asks again for what is missing.
        extra["minItems"] = min_items
    return (list[item], Field(default_factory=list, json_schema_extra=extra))


@lru_cache(maxsize=1)
def _theme() -> type[BaseModel]:
    return create_model(
        "ThemeOut",
        __base__=ThemeOut,
        title=_text(_TITLE),
        description=_text(),
        citations=_citations(),
    )


@lru_cache(maxsize=1)
def _finding() -> type[BaseModel]:
    return create_model(
        "FindingOut", __base__=FindingOut, statement=_text(), citations=_citations()
    )


@lru_cache(maxsize=1)
def _proposal() -> type[BaseModel]:
    return create_model(
        "ProposalOut",
        __base__=ProposalOut,
        title=_text(_TITLE),
        summary=_text(),
        value_proposition=_text(),
        key_features=_strings(),
        regulatory_notes=_text(default=""),
        feasibility=_text(default=""),
        pricing_and_positioning=_text(default=""),
        risks=_strings(),
        score_reason=_text(default=""),
        citations=_citations(),
    )


@dataclass(frozen=True, slots=True)
class AnswerSchema:
    """What a call asks for: ``model`` parses the answer, ``response_format`` is sent."""

    model: type[BaseModel]
    response_format: dict[str, Any]


def _bounded(model: type[BaseModel], ids: tuple[int, ...] | None) -> AnswerSchema:
    """``model`` with its schema's citation lists bounded to ``ids``: an ``enum`` of them, at
    most ``CITATIONS_MAX`` and at most ``len(ids)``; none when the call showed no evidence
    (``()``, an empty enum being invalid JSON Schema); unchanged when ``ids`` is ``None``."""
    fmt = json_schema_format(model)
    if ids is None:
        return AnswerSchema(model, fmt)
    items: dict[str, Any] = {"type": "integer", "enum": list(ids)} if ids else {"type": "integer"}
    cited = {"maxItems": min(CITATIONS_MAX, len(ids)), "items": items}

    def patch(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: patch(v) for k, v in node.items()}
            props = out.get("properties")
            if isinstance(props, dict) and "citations" in props:
                out["properties"] = {**props, "citations": {**props["citations"], **cited}}
            return out
        if isinstance(node, list):
            return [patch(v) for v in node]
        return node

    return AnswerSchema(model, patch(fmt))


@lru_cache(maxsize=64)
def _themes_model(count: int) -> type[BaseModel]:
    return create_model("OpportunityThemes", themes=_bounded_list(_theme(), count, count))


@lru_cache(maxsize=64)
def _proposals_model(max_items: int) -> type[BaseModel]:
    return create_model("ProductProposals", proposals=_bounded_list(_proposal(), max_items))


@lru_cache(maxsize=64)
def _findings_model(items: int, max_findings: int) -> type[BaseModel]:
    finding = _finding()
    fields: dict[str, Any] = {
        f"item_{i}": _bounded_list(finding, max_findings) for i in range(1, items + 1)
    }
    return create_model(f"LensFindings{items}", **fields)


def themes_schema(count: int, ids: tuple[int, ...] | None = None) -> AnswerSchema:
    """Node A's answer: ``count`` themes (asked; fewer still parse) citing only ``ids``
    (sorted). Asking for the count in the schema, not only in the prompt, spares the extra
    merge call that a short answer costs on the run's critical path."""
    return _bounded(_themes_model(count), ids)


def proposals_schema(max_items: int, ids: tuple[int, ...] | None = None) -> AnswerSchema:
    """The synthesis answer: at most ``max_items`` proposals citing only ``ids``."""
    return _bounded(_proposals_model(max_items), ids)


def findings_schema(
    items: int, max_findings: int, ids: tuple[int, ...] | None = None
) -> AnswerSchema:
    """A lens answer for a batch: one list of at most ``max_findings`` findings per item, keys
    ``item_1..item_n``, citing only ``ids``."""
    return _bounded(_findings_model(items, max_findings), ids)
