"""What a call asks the model to produce, and reading what it produced.

``response_format`` for a pydantic schema, the answer's text and finish reason, parsing into
the schema, and the repair message sent back when an answer does not match it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["answer_of", "json_schema_format", "repair_messages", "short_errors", "try_parse"]


def json_schema_format(schema: type[BaseModel]) -> dict[str, Any]:
    """``response_format`` asking for strict JSON matching the pydantic model ``schema``."""
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


def answer_of(completion: Any) -> tuple[str, str | None]:
    """The first choice's text and finish reason (``("", None)`` without a choice)."""
    if not completion.choices:
        return "", None
    choice = completion.choices[0]
    return choice.message.content or "", choice.finish_reason


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
