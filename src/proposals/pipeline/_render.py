"""How the nodes render request, evidence, themes, findings and drafts into prompt text.

Pure functions of plain data: the same inputs give the same text byte for byte, so the
response cache and the simulator stay deterministic.
"""

from __future__ import annotations

import re
from typing import Any

from ..store import SearchHit
from ._models import LENSES, ProposalRequest

__all__ = [
    "by_score",
    "common_values",
    "draft_text",
    "evidence_entry",
    "finding_line",
    "finding_order",
    "item_text",
    "shown_ids",
    "theme_line",
    "variables_text",
]

_CITE = re.compile(r"\[#(\d+)\]")


def variables_text(request: ProposalRequest) -> str:
    if not request.variables:
        return "(none)"
    return "\n".join(f"- {k}: {request.variables[k]}" for k in sorted(request.variables))


def _profiles_text(request: ProposalRequest) -> str:
    seen: dict[str, str] = {}
    for country in request.countries:
        for p in request.profiles_for(country):
            seen.setdefault(p.name, p.description)
    return "; ".join(f"{name} ({desc})" if desc else name for name, desc in sorted(seen.items()))


def common_values(request: ProposalRequest) -> dict[str, str]:
    """The template values every node's prompt shares."""
    return {
        "brief": request.brief,
        "countries": ", ".join(request.countries),
        "profiles": _profiles_text(request),
        "variables": variables_text(request),
    }


def evidence_entry(hit: SearchHit) -> dict[str, Any]:
    """A retrieved chunk as the state keeps it: ``{id, text, citation}``."""
    return {"id": hit.chunk_id, "text": hit.text, "citation": hit.citation.model_dump()}


def shown_ids(text: str) -> set[int]:
    """Chunk ids shown in a prompt's material as ``[#id]``."""
    return {int(m) for m in _CITE.findall(text)}


def theme_line(theme: dict[str, Any]) -> str:
    cites = " ".join(f"[#{i}]" for i in theme["citations"])
    return f"- {theme['title']}: {theme['description']} {cites}".rstrip()


def item_text(
    index: int, item: dict[str, Any], theme: dict[str, Any], texts: dict[int, str]
) -> str:
    """One lens item in a prompt: the theme, the country and profile, then its evidence."""
    profile = item["profile"]
    head = (
        f"[item_{index}] Theme {theme['id']}: {theme['title']}\n{theme['description']}\n"
        f"Country: {item['country']}\nProfile: {profile['name']}"
        + (f" ({profile['description']})" if profile["description"] else "")
    )
    evidence = "\n".join(f"[#{cid}] {texts[cid]}" for cid in item["chunk_ids"] if cid in texts)
    return f"{head}\nEvidence:\n{evidence or '(none found)'}"


def finding_order(f: dict[str, Any]) -> tuple[Any, ...]:
    """A total order on findings, independent of the order parallel batches finished in."""
    return (int(f["theme_id"][1:]), LENSES.index(f["lens"]), f["country"], f["profile"], f["text"])


def finding_line(f: dict[str, Any]) -> str:
    cites = " ".join(f"[#{c['chunk_id']}]" for c in f["citations"])
    return f"- ({f['theme_id']}, {f['lens']}) {f['text']} {cites}".rstrip()


def draft_text(d: dict[str, Any]) -> str:
    cites = " ".join(f"[#{c}]" for c in d["citations"])
    return (
        f"* {d['title']} (score {d['score']:.0f}: {d['score_reason']})\n"
        f"  Summary: {d['summary']}\n  Value: {d['value_proposition']}\n"
        f"  Features: {'; '.join(d['key_features'])}\n  Regulation: {d['regulatory_notes']}\n"
        f"  Feasibility: {d['feasibility']}\n  Pricing and positioning: {d['pricing_and_positioning']}\n"
        f"  Risks: {'; '.join(d['risks'])}\n  Evidence: {cites}"
    )


def by_score(drafts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(drafts, key=lambda d: (-d["score"], d["title"]))
