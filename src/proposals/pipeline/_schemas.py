"""The answer schemas sent with each call, bounded for small local models.

A model decoding under a grammar (llama.cpp, Ollama, vLLM with structured outputs) emits what
the schema allows; an unbounded ``list[int]`` or ``str`` lets a small model cite ids that do not
exist or repeat itself until the answer is cut off. So every schema states: citation ids as an
``enum`` of the ids shown in that call's evidence, lists with ``maxItems``, strings with
``maxLength``. The bounds are stated, not validated: an answer that breaks one is still parsed
and normalised in code (unknown ids dropped), as before. The gateway drops ``maxLength`` for
endpoints whose strict mode does not accept it (see ``GatewayConfig.schema_max_length``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic.config import JsonDict

from ._models import FindingOut, ProposalOut, ThemeOut

__all__ = [
    "CITATIONS_MAX",
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


def _citations(ids: tuple[int, ...] | None) -> Any:
    """At most ``CITATIONS_MAX`` of ``ids``; none when the call showed no evidence (``()``);
    any ids, still at most ``CITATIONS_MAX``, when the caller names none (``None``)."""
    items: JsonDict = {"type": "integer"}
    if ids:
        items["enum"] = list(ids)
    most = CITATIONS_MAX if ids is None else min(CITATIONS_MAX, len(ids))
    extra: JsonDict = {"maxItems": most, "items": items}
    return (list[int], Field(default_factory=list, json_schema_extra=extra))


def _bounded_list(item: Any, max_items: int) -> Any:
    return (list[item], Field(default_factory=list, json_schema_extra={"maxItems": max_items}))


@lru_cache(maxsize=256)
def _theme(ids: tuple[int, ...] | None) -> type[BaseModel]:
    return create_model(
        "ThemeOut",
        __base__=ThemeOut,
        title=_text(_TITLE),
        description=_text(),
        citations=_citations(ids),
    )


@lru_cache(maxsize=256)
def _finding(ids: tuple[int, ...] | None) -> type[BaseModel]:
    return create_model(
        "FindingOut", __base__=FindingOut, statement=_text(), citations=_citations(ids)
    )


@lru_cache(maxsize=256)
def _proposal(ids: tuple[int, ...] | None) -> type[BaseModel]:
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
        citations=_citations(ids),
    )


@lru_cache(maxsize=256)
def themes_schema(max_items: int, ids: tuple[int, ...] | None = None) -> type[BaseModel]:
    """Node A's answer: at most ``max_items`` themes citing only ``ids`` (sorted)."""
    return create_model("OpportunityThemes", themes=_bounded_list(_theme(ids), max_items))


@lru_cache(maxsize=256)
def proposals_schema(max_items: int, ids: tuple[int, ...] | None = None) -> type[BaseModel]:
    """The synthesis answer: at most ``max_items`` proposals citing only ``ids``."""
    return create_model("ProductProposals", proposals=_bounded_list(_proposal(ids), max_items))


@lru_cache(maxsize=256)
def findings_schema(
    items: int, max_findings: int, ids: tuple[int, ...] | None = None
) -> type[BaseModel]:
    """A lens answer for a batch: one list of at most ``max_findings`` findings per item, keys
    ``item_1..item_n``, citing only ``ids``."""
    finding = _finding(ids)
    fields: dict[str, Any] = {
        f"item_{i}": _bounded_list(finding, max_findings) for i in range(1, items + 1)
    }
    return create_model(f"LensFindings{items}", **fields)
