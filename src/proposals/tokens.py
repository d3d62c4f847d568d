"""Token counting shared by the splitter, the packer, the gateway and the simulator.

tiktoken is exact but downloads its encodings at first use, which fails offline. Its cache
(``TIKTOKEN_CACHE_DIR``; one file per encoding named by the SHA-1 of the encoding's URL) can be
filled from the npm package ``js-tiktoken``, which carries the same rank tables:
``python -m proposals.tokens install PATH_TO_js-tiktoken`` (``make`` does this). The rebuilt file
is checked against tiktoken's own expected SHA-256, so a wrong conversion is never used.

Without the files a conservative counter is used. It over-estimates on purpose: packing then
leaves room to spare, and the split-on-overflow path makes any remaining error harmless.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_ENCODING",
    "TokenCounter",
    "count_tokens",
    "default_cache_dir",
    "estimate_prompt_tokens",
    "get_counter",
    "install_from_js_tiktoken",
    "message_text",
    "truncate_to_tokens",
]

log = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"
_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# How OpenAI bills a chat prompt beyond its texts: a few tokens per message (role and
# separators), one more for a name, and a few priming the reply.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_TOKENS_PER_REPLY = 3


def default_cache_dir() -> Path:
    """``$TIKTOKEN_CACHE_DIR`` if set, else a folder inside the active environment."""
    env = os.environ.get("TIKTOKEN_CACHE_DIR")
    if env:
        return Path(env)
    return Path(sys.prefix) / "share" / "proposals" / "tiktoken"


def _cache_file(encoding: str, cache_dir: Path) -> Path:
    return cache_dir / hashlib.sha1(_URLS[encoding].encode()).hexdigest()


class TokenCounter:
    """Counts and truncates by tokens. ``exact`` tells whether tiktoken is behind it."""

    def __init__(self, encoding: str = DEFAULT_ENCODING) -> None:
        self.encoding_name = encoding
        self._enc = _load_tiktoken(encoding)
        self.exact = self._enc is not None

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self._enc is not None:
            return len(self._enc.encode(text, disallowed_special=()))
        return _conservative_count(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``max_tokens`` tokens."""
        if max_tokens <= 0:
            return ""
        if self._enc is not None:
            ids = self._enc.encode(text, disallowed_special=())
            if len(ids) <= max_tokens:
                return text
            return self._enc.decode(ids[:max_tokens])
        if _conservative_count(text) <= max_tokens:
            return text
        lo, hi = 0, len(text)
        while lo < hi:  # binary search on the prefix length
            mid = (lo + hi + 1) // 2
            if _conservative_count(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo]


def _conservative_count(text: str) -> int:
    """An upper-bound-leaning estimate: never below one token per 3 UTF-8 bytes."""
    pieces = len(_WORDISH.findall(text))
    by_bytes = math.ceil(len(text.encode("utf-8")) / 3)
    return max(pieces, by_bytes)


def _load_tiktoken(encoding: str):  # type: ignore[no-untyped-def]
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - a dependency
        return None
    cache_dir = default_cache_dir()
    if encoding in _URLS and not _cache_file(encoding, cache_dir).exists():
        log.info(
            "tiktoken files for %s not found in %s; using a conservative counter",
            encoding,
            cache_dir,
        )
        return None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir))
    try:
        return tiktoken.get_encoding(encoding)
    except Exception as exc:  # offline download failure, corrupt cache
        log.warning("tiktoken could not load %s (%s); using a conservative counter", encoding, exc)
        return None


@functools.cache
def get_counter(encoding: str = DEFAULT_ENCODING) -> TokenCounter:
    """The process-wide counter for ``encoding``."""
    return TokenCounter(encoding)


def count_tokens(text: str) -> int:
    """Tokens in ``text`` under the default encoding (exact or conservative)."""
    return get_counter().count(text)


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """Prefix of ``text`` within ``max_tokens`` under the default encoding."""
    return get_counter().truncate(text, max_tokens)


def message_text(content: Any) -> str:
    """The text of one chat message's ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]], *, reply: bool = True) -> int:
    """Prompt tokens of chat ``messages`` as providers bill them: the texts plus a few per
    message (the one estimate used by the gateway, the pipeline's packing and the simulator).
    ``reply=False`` leaves out the tokens priming the answer (to count messages added to a
    prompt already counted)."""
    total = _TOKENS_PER_REPLY if reply else 0
    for message in messages:
        total += _TOKENS_PER_MESSAGE + count_tokens(message_text(message.get("content")))
        name = message.get("name")
        if isinstance(name, str):
            total += _TOKENS_PER_NAME + count_tokens(name)
    return total


def install_from_js_tiktoken(package_dir: Path, cache_dir: Path | None = None) -> list[str]:
    """Rebuild tiktoken's cache files from an unpacked ``js-tiktoken`` npm package.

    Returns the encodings installed. Each file is verified against tiktoken's SHA-256.
    """
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    for encoding, expected in _SHA256.items():
        source = next(iter(Path(package_dir).rglob(f"ranks/{encoding}.js")), None)
        if source is None:
            continue
        text = source.read_text(encoding="utf-8")
        data = json.loads(text[text.index("{") : text.rindex("}") + 1])
        lines: list[str] = []
        for row in data["bpe_ranks"].split("\n"):
            if not row:
                continue
            parts = row.split(" ")
            offset = int(parts[1])
            lines.extend(f"{tok} {offset + i}\n" for i, tok in enumerate(parts[2:]))
        blob = "".join(lines).encode()
        if hashlib.sha256(blob).hexdigest() != expected:
            log.warning("js-tiktoken %s does not match tiktoken's hash; skipped", encoding)
            continue
        _cache_file(encoding, cache_dir).write_bytes(blob)
        installed.append(encoding)
    get_counter.cache_clear()
    return installed


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "install":
        print("usage: python -m proposals.tokens install PATH_TO_UNPACKED_js-tiktoken")
        return 2
    done = install_from_js_tiktoken(Path(argv[1]))
    print(f"tiktoken encodings installed in {default_cache_dir()}: {', '.join(done) or 'none'}")
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
