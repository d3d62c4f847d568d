"""What a call asks the model to produce, and reading what it produced.

``response_format`` for a pydantic schema, the answer's text and finish reason, parsing into
the schema, and the repair message sent back when an answer does not match it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = [
    "Reply",
    "json_schema_format",
    "repair_messages",
    "reply_from",
    "short_errors",
    "try_parse",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the gateway reads of one chat completion."""

    text: str
    """The first choice's content ("" when there is none)."""
    finish_reason: str | None
    model: str | None
    prompt_tokens: int | None
    """``None`` (with ``completion_tokens``) when the provider reported no usage."""
    completion_tokens: int | None


def reply_from(raw: Any) -> Reply:
    """The :class:`Reply` in an SDK raw response.

    Read from the JSON body: building the SDK's typed ``ChatCompletion`` costs more CPU per
    call than everything else the gateway does. A body that is not a chat completion goes
    through the SDK's own parsing (and its errors)."""
    try:
        data = raw.http_response.json()
        choices = data.get("choices") or []
        first = choices[0] if choices else {}
        usage = data.get("usage")
        return Reply(
            text=(first.get("message") or {}).get("content") or "" if first else "",
            finish_reason=first.get("finish_reason") if first else None,
            model=data.get("model"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0) if usage else None,
            completion_tokens=int(usage.get("completion_tokens") or 0) if usage else None,
        )
    except (ValueError, TypeError, AttributeError, KeyError):
        completion = raw.parse()
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        return Reply(
            text=(choice.message.content or "") if choice else "",
            finish_reason=choice.finish_reason if choice else None,
            model=completion.model,
            prompt_tokens=int(usage.prompt_tokens or 0) if usage else None,
            completion_tokens=int(usage.completion_tokens or 0) if usage else None,
        )


@functools.lru_cache(maxsize=512)
def json_schema_format(schema: type[BaseModel]) -> dict[str, Any]:
    """``response_format`` asking for strict JSON matching the pydantic model ``schema``
    (built once per schema; the dict is shared, do not modify it)."""
    try:
        from openai.lib import type_to_response_format_param
    except ImportError:  # pragma: no cover - older or newer SDK layouts
        return _build_strict_format(schema)
    return dict(type_to_response_format_param(schema))  # type: ignore[arg-type]


def _build_strict_format(schema: type[BaseModel]) -> dict[str, Any]:
    """Fallback: strict-mode JSON schema without the SDK's helper."""

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items() if k != "default"}
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema.__name__,
            "schema": strict(schema.model_json_schema()),
            "strict": True,
        },
    }


def try_parse(schema: type[BaseModel] | None, text: str) -> BaseModel | None:
    """``text`` parsed into ``schema``; ``None`` without a schema or when it does not match."""
    if schema is None:
        return None
    try:
        return schema.model_validate_json(text)
    except ValidationError:
        return None


def short_errors(exc: ValidationError) -> str:
    """The first few validation errors, one phrase each."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "(root)"
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)


def repair_messages(
    msgs: list[dict[str, Any]], text: str, exc: ValidationError
) -> list[dict[str, Any]]:
    """The conversation asking once more for an answer that matches the schema."""
    return [
        *msgs,
        {"role": "assistant", "content": text},
        {
            "role": "user",
            "content": "That answer does not match the required JSON schema: "
            f"{short_errors(exc)}. Reply again with only a JSON object that matches "
            "the schema exactly.",
        },
    ]
