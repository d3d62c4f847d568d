"""``POST /v1/embeddings`` on the simulator: deterministic vectors under the profile's quotas.

Embedding requests count against the same connection cap, requests per minute and tokens per
minute as chat completions (a provider's quota is per endpoint), so processes that embed and
chat at once can be tested against one quota. A vector is a hashed bag of the text's words,
normalised: texts sharing words are near, and the same text always gets the same vector.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from ..tokens import count_tokens

__all__ = ["EmbeddingRequest", "embedding_request"]

_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_DEFAULT_DIM = 256
_WORD = re.compile(r"\w+")


class EmbeddingRequest:
    """One parsed embeddings request: its texts, vector size and token count."""

    def __init__(self, model: str, texts: list[str], dim: int) -> None:
        self.model = model
        self.texts = texts
        self.dim = dim
        self.tokens = sum(count_tokens(t) for t in texts)

    def answer(self) -> bytes:
        """The response body, vectors in input order."""
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(text, self.dim)}
            for i, text in enumerate(self.texts)
        ]
        usage = {"prompt_tokens": self.tokens, "total_tokens": self.tokens}
        body = {"object": "list", "data": data, "model": self.model, "usage": usage}
        return json.dumps(body).encode()


def embedding_request(raw: bytes, default_model: str) -> EmbeddingRequest:
    """Parse a request body; raises ``ValueError`` with the reason when it is not valid."""
    try:
        body = json.loads(raw)
        given = body["input"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"Invalid request body: {exc}") from exc
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("'input' must be a string or a non-empty list of strings")
    if any(not t for t in texts):
        raise ValueError("'input' must not contain empty strings")
    model = str(body.get("model") or default_model)
    dim = _DIMS.get(model, _DEFAULT_DIM)
    wanted = body.get("dimensions")
    if wanted is not None:
        if not isinstance(wanted, int) or not 1 <= wanted <= dim:
            raise ValueError(f"'dimensions' must be between 1 and {dim} for {model}")
        dim = wanted
    return EmbeddingRequest(model, texts, dim)


def _vector(text: str, dim: int) -> list[float]:
    vector = [0.0] * dim
    for word in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[h % dim] += 1.0 if (h >> 40) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:  # no words: one fixed direction, never a zero vector
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]
