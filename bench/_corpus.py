"""A synthetic corpus that behaves like real text for retrieval benchmarks.

Reusing a few hundred template sentences across 100k chunks makes every query phrase match
thousands of chunks, which no real corpus does and which makes full text look far slower than
it is. Here chunk text is sampled from a word-level bigram model of the sample corpus,
interpolated per source document (a "topic") with the whole corpus, and content words are
swapped, at a fixed rate, for words of a large synthetic vocabulary drawn from a Zipf-Mandelbrot
law. The result has a natural term distribution: a head of common words, a long tail of terms
found in one or a few chunks (like names, codes and rare terms in real documents), and no long
repeated passages.

Vectors cannot be computed for 100k chunks on 2 cores in a benchmark's time, so a few thousand
chunks per run are generated the same way and embedded with the real model ("bases"); every
chunk gets the normalised mean of two bases of its own topic plus Gaussian noise. The caller
measures and reports how close that comes to the real embedding of the chunk's text.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:[.,]\d+)*%?|[.!?;,:]")
_END = "."
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "with",
        "which",
        "will",
        "can",
        "may",
        "not",
        "no",
        "their",
        "they",
        "than",
        "then",
        "there",
        "these",
        "those",
        "per",
        "each",
    ]
)
_SYLLABLES = [
    "ba",
    "be",
    "bi",
    "bo",
    "bu",
    "ca",
    "ce",
    "co",
    "da",
    "de",
    "di",
    "do",
    "fa",
    "fe",
    "fi",
    "ga",
    "go",
    "ka",
    "ke",
    "ki",
    "la",
    "le",
    "li",
    "lo",
    "lu",
    "ma",
    "me",
    "mi",
    "mo",
    "na",
    "ne",
    "ni",
    "no",
    "nu",
    "pa",
    "pe",
    "pi",
    "po",
    "ra",
    "re",
    "ri",
    "ro",
    "ru",
    "sa",
    "se",
    "si",
    "so",
    "ta",
    "te",
    "ti",
    "to",
    "tu",
    "va",
    "ve",
    "vi",
    "za",
    "zo",
]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(" ".join(text.split()))


def _is_content(word: str) -> bool:
    return len(word) >= 4 and word.isalpha() and word.lower() not in _STOP


class MarkovCorpus:
    """Bigram text generator over ``topics`` (lists of source texts), with a Zipfian tail.

    ``tail_rate`` is the share of content words replaced by a synthetic word;
    ``tail_vocab`` the synthetic vocabulary's size; ``topic_weight`` how often a step follows
    its own topic's bigrams rather than the whole corpus's.
    """

    def __init__(
        self,
        topics: Sequence[Sequence[str]],
        *,
        seed: int = 7,
        tail_vocab: int = 200_000,
        tail_rate: float = 0.2,
        zipf_s: float = 1.08,
        zipf_q: float = 20.0,
        topic_weight: float = 0.6,
    ) -> None:
        self._rng = random.Random(seed)
        self._np = np.random.default_rng(seed)
        self.tail_rate = tail_rate
        self.topic_weight = topic_weight
        glob: dict[str, list[str]] = defaultdict(list)
        self._topics: list[dict[str, list[str]]] = []
        for texts in topics:
            local: dict[str, list[str]] = defaultdict(list)
            for text in texts:
                words = [_END, *_tokens(text)]
                for a, b in itertools.pairwise(words):
                    local[a].append(b)
                    glob[a].append(b)
            self._topics.append(dict(local))
        self._global = dict(glob)
        # Unique pseudo-words: syllable strings indexed in base len(_SYLLABLES), three or more
        # syllables, so none collides with an English word the stemmer would fold.
        self.vocab = [self._word(i) for i in range(tail_vocab)]
        weights = 1.0 / (np.arange(tail_vocab) + 1.0 + zipf_q) ** zipf_s
        self._cdf = np.cumsum(weights / weights.sum())
        self._tail_draws = np.empty(0, dtype=np.int64)
        self._tail_pos = 0

    @staticmethod
    def _word(i: int) -> str:
        parts = []
        n = i + len(_SYLLABLES) ** 2
        while n:
            n, r = divmod(n, len(_SYLLABLES))
            parts.append(_SYLLABLES[r])
        return "".join(parts)

    def _tail(self) -> str:
        if self._tail_pos >= len(self._tail_draws):
            self._tail_draws = np.searchsorted(self._cdf, self._np.random(200_000))
            self._tail_pos = 0
        word = self.vocab[int(self._tail_draws[self._tail_pos])]
        self._tail_pos += 1
        return word

    def text(self, topic: int, words: int) -> str:
        """About ``words`` words of topic ``topic``, ending at a sentence end."""
        rng = self._rng
        local = self._topics[topic]
        out: list[str] = []
        prev = _END
        n = 0
        while n < words or prev != _END:
            succ = local.get(prev) if rng.random() < self.topic_weight else None
            if not succ:
                succ = self._global.get(prev) or self._global[_END]
            word = succ[int(rng.random() * len(succ))]
            prev = word
            if word == _END and n >= words:
                out.append(".")
                break
            if _is_content(word) and rng.random() < self.tail_rate:
                out.append(self._tail())
            else:
                out.append(word)
            if word[0].isalnum():
                n += 1
            if n > words * 2:  # a chain that never reaches a sentence end
                out.append(".")
                break
        return _detokenize(out)


def _detokenize(tokens: list[str]) -> str:
    parts: list[str] = []
    for t in tokens:
        if parts and t in ".!?;,:":
            parts[-1] += t
        else:
            parts.append(t)
    return " ".join(parts)


def document_frequencies(texts: Sequence[str]) -> Counter[str]:
    """How many of ``texts`` each lower-cased word occurs in."""
    df: Counter[str] = Counter()
    for text in texts:
        df.update({w.lower() for w in _tokens(text) if w[0].isalpha()})
    return df


def content_words(text: str) -> list[str]:
    """The words of ``text`` worth searching for (no stop words, no short words)."""
    return [w for w in _tokens(text) if _is_content(w)]
