"""How many output tokens a pipeline call asks for (providers charge TPM on ``max_tokens``)."""

from __future__ import annotations

import math
import random

from proposals.pipeline._sizes import OutputSizer


def test_before_answers_the_prior_or_the_cap() -> None:
    sizer = OutputSizer()
    assert sizer.expect("lens", 3, 5000) == 5000  # nothing known: the whole cap
    assert sizer.expect("lens", 3, 5000, prior=400) == math.ceil(400 * 3 * 1.3) + 64
    assert sizer.expect("lens", 30, 5000, prior=400) == 5000  # never beyond the cap


def test_few_answers_never_ask_below_the_prior_nor_below_the_longest_seen() -> None:
    sizer = OutputSizer()
    sizer.observe("lens", 3, 600)  # 200 an item: a short first answer
    assert sizer.expect("lens", 3, 5000, prior=400) == math.ceil(400 * 3 * 1.3) + 64
    sizer.observe("lens", 1, 700)  # 700 an item: longer than the prior
    assert sizer.expect("lens", 3, 5000, prior=400) == math.ceil(700 * 3 * 1.3) + 64
    assert sizer.expect("synthesize", 5, 9000) == 9000  # another node: nothing known


def test_many_answers_size_by_mean_and_spread_and_rarely_cut() -> None:
    """Answers of 1-4 units, each unit ~ N(360, 80) tokens: once enough are seen the ask
    follows n * mean + 3 sd sqrt(n), far below the longest-per-unit rule, and cuts stay
    rare."""
    rng = random.Random(7)
    sizer = OutputSizer()

    def answer(units: int) -> int:
        return sum(max(0, round(rng.gauss(360, 80))) for _ in range(units))

    cut = asked = used = 0
    for _ in range(400):
        units = rng.choice((1, 2, 3, 3, 3, 4))
        want = sizer.expect("lens", units, 10_000, prior=440)
        tokens = answer(units)
        cut += tokens > want
        asked, used = asked + want, used + tokens
        sizer.observe("lens", units, tokens)
    assert cut <= 4  # about 0.1 % expected beyond 3 sd; a few more while learning
    expected = 3 * 360 + 3 * 80 * math.sqrt(3) + 64
    assert abs(sizer.expect("lens", 3, 10_000) - expected) < 0.08 * expected
    assert asked < 1.6 * used
