"""Deterministic output built from the prompt's own text.

Everything here is a pure function of the request body and the seed: the same request gives
the same answer whatever the attempt, the timing or the faults around it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..tokens import message_text

__all__ = [
    "Material",
    "generate_content",
    "material_for",
    "request_key",
    "request_rng",
]

_CHUNK_ID = re.compile(r"\[#(\d+)\]")
# Evidence is one ``[#id] text`` line per chunk; a chunk's own paragraphs stay on its line
# or follow it, so a paragraph is split on blank lines and on lines starting a new marker.
_PARAGRAPH = re.compile(r"\n\s*\n|\n(?=\[#\d+\])")
# A sentence runs to a line end or to . ! ? followed by a space; "3.5" and "e.g." stay whole.
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+(?=[^\s.!?])[^.!?\n]*)*[.!?]*")
_SHORT_FIELD = (
    "title",
    "name",
    "label",
    "headline",
    "theme",
    "country",
    "profile",
    "segment",
    "code",
    "type",
    "category",
    "kind",
    "tag",
    "channel",
    "id",
)
_FALLBACK = "The simulator found no sentence in the prompt to draw from."
# Notices and boilerplate are never answer material: disclaimers, copyright and
# confidentiality lines, "FICTIONAL DOCUMENT:"-style banners (capitals before a colon).
_BOILERPLATE = re.compile(
    r"\b(?:fictional|invented|disclaimer|all rights reserved|copyright|confidential"
    r"|do not (?:cite|distribute)|for illustration only|sample corpus)\b",
    re.IGNORECASE,
)
# The banner test above must see capitals; re.IGNORECASE would make any "Word:" match.
_BANNER = re.compile(r"^[A-Z][A-Z ]{3,}:")
_STOPWORD_TEXT = """a an the and or but nor of to in on at by for with from into onto over under about
    as is are was were be been being has have had do does did this that these those it its
    their they them there here which who whom whose what when where why how than then so
    such not no can could may might must shall should will would per via each every any all
    some most more less few many much very also only just both either neither our your his
    her we you he she i me my us one two three four five six seven eight nine ten new used
    use up out if while during before after between within without among against upon"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*[A-Za-z]$")
# Keys that change how an answer is delivered, not what it is.
_DELIVERY_KEYS = ("stream", "stream_options", "max_tokens", "max_completion_tokens", "user")


@dataclass(frozen=True, slots=True)
class Material:
    """What the prompt offers to build an answer from."""

    sentences: tuple[str, ...]
    chunk_ids: tuple[int, ...]
    grounded: tuple[str, ...] = ()
    """Sentences of the paragraphs that carry a chunk id: the evidence proper."""


_material_cache: OrderedDict[bytes, Material] = OrderedDict()
_MATERIAL_CACHE_SIZE = 1024


def material_for(messages: list[dict[str, Any]]) -> Material:
    """Sentences and chunk ids of the prompt, in prompt order.

    Extraction is linear in the prompt and cached per message text, since system prompts and
    evidence blocks recur across calls, nodes and retries.
    """
    parts = [_message_material(message_text(m.get("content"))) for m in messages]
    if len(parts) == 1 and not parts[0].grounded:
        return parts[0]
    # Sentences of the evidence (text that follows an [#id]) are preferred: they are what a
    # grounded answer would draw on, where the rest of a prompt is mostly instructions.
    grounded = tuple(dict.fromkeys(s for p in parts for s in p.grounded))
    sentences = grounded or tuple(
        dict.fromkeys(s for p in parts for s in p.sentences if s is not _FALLBACK)
    )
    ids = tuple(dict.fromkeys(i for p in parts for i in p.chunk_ids))
    return Material(sentences or (_FALLBACK,), ids)


def _message_material(text: str) -> Material:
    key = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest()
    hit = _material_cache.get(key)
    if hit is not None:
        _material_cache.move_to_end(key)
        return hit
    material = _extract(text)
    _material_cache[key] = material
    if len(_material_cache) > _MATERIAL_CACHE_SIZE:
        _material_cache.popitem(last=False)
    return material


def _sentences_of(text: str, *, loose: bool = True) -> list[str]:
    """The whole sentences of ``text``: a capital (or digit) first, end punctuation last,
    5 to 45 words, not a notice or boilerplate line. When the text has none, its looser
    sentence-like lines (4+ words, whole) are used instead."""
    clean = _CHUNK_ID.sub(" ", text)
    whole: list[str] = []
    loose_found: list[str] = []
    for raw in _SENTENCE.findall(clean):
        words = raw.split()
        if len(words) < 4:
            continue
        sentence = " ".join(words).lstrip("-*#>|: ")
        if _BOILERPLATE.search(sentence) or _BANNER.match(sentence) or "|" in sentence:
            continue
        if (
            5 <= len(words) <= 45
            and sentence[:1].isupper() | sentence[:1].isdigit()
            and sentence[-1] in ".!?"
            and sentence.count("(") == sentence.count(")")
        ):
            whole.append(sentence)
        elif len(words) <= 45:
            loose_found.append(sentence)
    return whole or (loose_found if loose else [])


def _evidence_text(text: str) -> str:
    """The paragraphs that carry an ``[#id]`` marker (evidence or cited findings)."""
    return "\n".join(p for p in _PARAGRAPH.split(text) if _CHUNK_ID.search(p))


def _extract(text: str) -> Material:
    ids = tuple(dict.fromkeys(int(m) for m in _CHUNK_ID.findall(text)))
    sentences = _sentences_of(text)
    # Evidence that is only data rows (no whole sentence) gives no grounded material: the
    # prompt's own whole sentences are used instead of fragments.
    grounded = _sentences_of(_evidence_text(text), loose=False) if ids else []
    return Material(
        tuple(dict.fromkeys(sentences)) or (_FALLBACK,), ids, tuple(dict.fromkeys(grounded))
    )


def request_key(body: dict[str, Any], seed: int) -> bytes:
    """A digest of the seed and the request body, delivery keys (stream, max_tokens) aside."""
    canonical = {k: v for k, v in body.items() if k not in _DELIVERY_KEYS}
    blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(f"{seed}\x00{blob}".encode("utf-8", "replace"), digest_size=16).digest()


def request_rng(key: bytes) -> random.Random:
    """The random generator of one request, seeded by its :func:`request_key`."""
    return random.Random(int.from_bytes(key, "big"))


def generate_content(
    body: dict[str, Any],
    material: Material,
    rng: random.Random,
    *,
    list_mean: float,
    nested_list_mean: float,
    citations_mean: float,
    text_sentences: float,
) -> str:
    """The assistant message content for ``body`` (JSON text or plain text)."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    gen = _Generator(material, rng, list_mean, nested_list_mean, citations_mean)
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object"}
        value = gen.value(schema, schema, name="", depth=0, nested=False)
        return json.dumps(value, ensure_ascii=False)
    if kind == "json_object":
        value = {
            "answer": gen.sentences(max(1, round(text_sentences / 2))),
            "citations": gen.citations(None, 0, None),
        }
        return json.dumps(value, ensure_ascii=False)
    count = max(1, _around(rng, text_sentences))
    return gen.sentences(count, join="\n\n" if count > 3 else " ")


def _noun_phrases(sentences: tuple[str, ...]) -> list[str]:
    """Runs of 2-5 content words (letters only, no stopword) bounded by stopwords or
    punctuation, in order of first appearance: "household savings accounts"."""
    cached = _phrase_cache.get(sentences)
    if cached is not None:
        return cached
    found: dict[str, None] = {}
    run: list[str] = []

    def flush() -> None:
        if 2 <= len(run) <= 5:
            found[" ".join(run)] = None
        run.clear()

    for sentence in sentences:
        for token in sentence.split():
            word = token.strip(".,;:!?\"'()[]")
            content = bool(_WORD.match(word)) and word.lower() not in _STOPWORDS
            if token[:1] in "(\"'[" or not content:
                flush()
            if content:
                run.append(word)
                if token.rstrip(".,;:!?\"')]") != token:
                    flush()
        flush()
    phrases = list(found)
    _phrase_cache[sentences] = phrases
    if len(_phrase_cache) > 256:
        _phrase_cache.pop(next(iter(_phrase_cache)))
    return phrases


_phrase_cache: dict[tuple[str, ...], list[str]] = {}


def _shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: whole sentences if any fit, else whole words."""
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE.findall(text):
        candidate = f"{kept} {sentence.strip()}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if kept:
        return kept
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut[:limit].rstrip(" ,;:")


def _around(rng: random.Random, mean: float) -> int:
    """A small count spread around ``mean`` (rounded normal, sd ~ sqrt(mean), never < 0)."""
    if mean <= 0:
        return 0
    return max(0, round(rng.gauss(mean, math.sqrt(mean) * 0.7)))


class _Generator:
    """Walks a JSON schema and produces a value valid against it."""

    def __init__(
        self,
        material: Material,
        rng: random.Random,
        list_mean: float,
        nested_list_mean: float,
        citations_mean: float,
    ) -> None:
        self.m = material
        self.rng = rng
        self.list_mean = list_mean
        self.nested_list_mean = nested_list_mean
        self.citations_mean = citations_mean
        self._cursor = rng.randrange(len(material.sentences))

    # -- text ---------------------------------------------------------------------------
    def _next_sentence(self) -> str:
        # Walk the prompt's sentences from a random start, so siblings differ and follow
        # the prompt's order.
        self._cursor = (self._cursor + 1 + self.rng.randrange(3)) % len(self.m.sentences)
        return self.m.sentences[self._cursor]

    def sentences(self, count: int, join: str = " ") -> str:
        picked = dict.fromkeys(self._next_sentence() for _ in range(count))
        return join.join(picked)

    def phrase(self) -> str:
        """A title: a whole noun phrase of the material (2-5 content words between
        stopwords or punctuation), first letter capitalised."""
        phrases = _noun_phrases(self.m.sentences)
        if not phrases:
            words = self.rng.choice(self.m.sentences).rstrip(".!?").split(" ")
            return " ".join(words[:4])
        chosen = self.rng.choice(phrases)
        return chosen[:1].upper() + chosen[1:]

    def string(self, schema: dict[str, Any], name: str) -> str:
        lowered = name.lower()
        if any(word in lowered for word in _SHORT_FIELD):
            text = self.phrase()
        else:
            text = self.sentences(1 + (self.rng.random() < 0.4))
        max_len = schema.get("maxLength")
        if isinstance(max_len, int) and len(text) > max_len:
            text = _shorten(text, max_len)
        min_len = schema.get("minLength")
        if isinstance(min_len, int) and len(text) < min_len:
            text = (text + " " + self.sentences(max(1, min_len // 20 + 1)))[: max(min_len, 1)]
            text = text.ljust(min_len, ".")
        return text

    # -- numbers ------------------------------------------------------------------------
    def number(self, schema: dict[str, Any], integer: bool) -> int | float:
        def bound(key: str) -> float | None:
            value = schema.get(key)
            return float(value) if isinstance(value, int | float) else None

        step = 1.0 if integer else 1e-3
        lo, hi = bound("minimum"), bound("maximum")
        ex_lo, ex_hi = bound("exclusiveMinimum"), bound("exclusiveMaximum")
        if ex_lo is not None:
            lo = ex_lo + step if lo is None else max(lo, ex_lo + step)
        if ex_hi is not None:
            hi = ex_hi - step if hi is None else min(hi, ex_hi - step)
        span = 10.0 if integer else 1.0
        if lo is None:
            lo = (1.0 if integer else 0.0) if hi is None else hi - span
        if hi is None:
            hi = lo + span
        if integer:
            low, high = math.ceil(lo), math.floor(hi)
            return self.rng.randint(low, max(low, high))
        if hi <= lo:
            return lo
        return min(hi, max(lo, round(self.rng.uniform(lo, hi), 3)))

    # -- arrays -------------------------------------------------------------------------
    def citations(
        self, item_schema: dict[str, Any] | None, min_items: int, max_items: int | None
    ) -> list[Any]:
        ids: tuple[Any, ...] = self.m.chunk_ids
        allowed = (item_schema or {}).get("enum")
        if allowed:  # the schema names the ids that may be cited: only those
            ids = tuple(i for i in ids if i in allowed) or tuple(allowed)
        want = max(min_items, 1 if ids else 0, _around(self.rng, self.citations_mean))
        if max_items is not None:
            want = min(want, max_items)
        want = min(want, len(ids)) if len(ids) >= min_items else want
        if ids and want <= len(ids):
            chosen = sorted(self.rng.sample(range(len(ids)), want))
            picked = [ids[i] for i in chosen]
        elif allowed:
            picked = list(ids) + self.rng.choices(list(allowed), k=want - len(ids))
        else:
            picked = list(ids) + [self.rng.randint(1, 10_000) for _ in range(want - len(ids))]
        item_type = (item_schema or {}).get("type", "integer")
        if item_type == "string":
            return [str(i) for i in picked]
        return picked

    def array(
        self, schema: dict[str, Any], root: dict[str, Any], name: str, depth: int, nested: bool
    ) -> list[Any]:
        items = schema.get("items") or {}
        resolved_items = self.resolve(items, root)
        min_items = int(schema.get("minItems") or 0)
        max_items = schema.get("maxItems")
        lowered = name.lower()
        if ("citation" in lowered or "chunk" in lowered) and resolved_items.get("type") in (
            "integer",
            "string",
            "number",
            None,
        ):
            return self.citations(resolved_items, min_items, max_items)
        mean = self.nested_list_mean if nested else self.list_mean
        count = max(min_items, _around(self.rng, mean), 1 if mean > 0 else 0)
        if max_items is not None:
            count = min(count, int(max_items))
        if depth > 6:
            count = min_items
        singular = name[:-1] if name.endswith("s") else name
        values = [
            self.value(items, root, name=singular, depth=depth + 1, nested=True)
            for _ in range(count)
        ]
        if schema.get("uniqueItems"):
            values = list({json.dumps(v, sort_keys=True): v for v in values}.values())
        return values

    # -- dispatch -----------------------------------------------------------------------
    def resolve(self, schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            target: Any = root
            if ref.startswith("#"):
                for part in ref.lstrip("#").split("/"):
                    if part:
                        target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra else target
            seen += 1
        return schema if isinstance(schema, dict) else {}

    def value(
        self, schema: dict[str, Any], root: dict[str, Any], *, name: str, depth: int, nested: bool
    ) -> Any:
        schema = self.resolve(schema, root)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.resolve(o, root) for o in schema[key]]
                non_null = [o for o in options if o.get("type") != "null"]
                nullable = len(non_null) < len(options)
                # Deep inside a (possibly recursive) schema, prefer ending the branch.
                if not non_null or (nullable and (depth > 6 or self.rng.random() < 0.1)):
                    return None
                return self.value(
                    self.rng.choice(non_null), root, name=name, depth=depth, nested=nested
                )
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part, root))
            return self.value(merged, root, name=name, depth=depth, nested=nested)
        kind = schema.get("type")
        if isinstance(kind, list):
            choices = [k for k in kind if k != "null"] or ["null"]
            kind = choices[0]
        if kind is None:
            kind = (
                "object" if "properties" in schema else "array" if "items" in schema else ("string")
            )
        if kind == "object":
            props = schema.get("properties") or {}
            return {
                key: self.value(sub, root, name=key, depth=depth + 1, nested=nested)
                for key, sub in props.items()
            }
        if kind == "array":
            return self.array(schema, root, name, depth, nested)
        if kind == "string":
            return self.string(schema, name)
        if kind == "integer":
            return self.number(schema, integer=True)
        if kind == "number":
            return self.number(schema, integer=False)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None
