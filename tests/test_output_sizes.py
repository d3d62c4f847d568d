"""How many output tokens a pipeline call asks for (providers charge TPM on ``max_tokens``)."""

from __future__ import annotations

import math
import random

from proposals.pipeline._sizes import OutputSizer

PAD = OutputSizer.PAD


def test_before_answers_the_prior_or_the_cap() -> None:
    sizer = OutputSizer()
    assert sizer.expect("lens", 3, 5000) == 5000  # nothing known: the whole cap
    assert sizer.expect("lens", 3, 5000, prior=400) == math.ceil(400 * 3 * 1.3) + PAD
    assert sizer.expect("lens", 30, 5000, prior=400) == 5000  # never beyond the cap


def test_few_answers_blend_with_the_prior_then_the_fit_takes_over() -> None:
    """The first answers back are the shortest (600 tokens for 3 units, 200 a unit): until
    ``MIN_SEEN`` are known the ask blends the prior's (400 a unit) with the fit, the prior's
    weight falling answer by answer; then it is the answers' rate plus a spread of at least
    ``PRIOR_CV`` of it, widened for the doubt about the mean."""
    sizer = OutputSizer()
    prior_ask = math.ceil(400 * 3 * 1.3) + PAD
    sizer.observe("lens", 3, 600)
    fit = sizer.expect("lens", 3, 5000)  # no prior: the fit alone
    assert 600 < fit < prior_ask
    blended = sizer.expect("lens", 3, 5000, prior=400)
    assert fit < blended < prior_ask
    sizer.observe("lens", 3, 600)
    assert sizer.expect("lens", 3, 5000, prior=400) < blended  # the prior weighs less
    sizer.observe("lens", 1, 700)  # 700 an item: above the prior, so the fit asks more
    assert sizer.expect("lens", 3, 5000, prior=400) > prior_ask
    for _ in range(OutputSizer.MIN_SEEN - 3):
        sizer.observe("lens", 3, 600)
    seen, units = OutputSizer.MIN_SEEN, 3 * OutputSizer.MIN_SEEN - 2
    tokens = 600 * (seen - 1) + 700
    mean = tokens / units
    own = 600 * 600 / 3 * (seen - 1) + 700 * 700 - 2 * mean * tokens + mean * mean * units
    cv, weight = OutputSizer.PRIOR_CV, OutputSizer.PRIOR_WEIGHT
    sd = math.sqrt((own + weight * (cv * mean) ** 2) / (seen - 1 + weight))
    want = 3 * mean + OutputSizer.Z * sd * math.sqrt(3 + 9 / units)
    assert sizer.expect("lens", 3, 5000, prior=400) == math.ceil(want) + PAD  # prior gone
    assert sizer.expect("synthesize", 5, 9000) == 9000  # another node: nothing known


def test_many_answers_size_by_mean_and_spread_and_rarely_cut() -> None:
    """Answers of 1-4 units, each unit ~ N(360, 80) tokens: once enough are seen the ask
    follows n * mean + Z sd sqrt(n) (the spread learned, not the prior's), and cuts stay
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
    assert cut <= 6  # about 0.6 % expected beyond 2.5 sd; a few more while learning
    expected = 3 * 360 + OutputSizer.Z * 80 * math.sqrt(3) + PAD
    assert abs(sizer.expect("lens", 3, 10_000) - expected) < 0.05 * expected
    assert asked < 1.45 * used  # the old rule (3 sd, longest-per-unit first) needed 1.6


def test_answers_of_one_size_are_sized_by_their_own_spread_once_there_are_enough() -> None:
    """Answers of 3 units whose units are not independent (all alike: an answer varies 3
    times as much as one unit, not sqrt(3) times), among many answers of 1 unit: once
    ``SAME_SIZE`` answers of 3 are known, their own spread sizes the next one."""
    rng = random.Random(3)
    sizer = OutputSizer()
    for _ in range(60):
        sizer.observe("lens", 1, max(0, round(rng.gauss(300, 60))))
    for _ in range(OutputSizer.SAME_SIZE - 1):
        sizer.observe("lens", 3, 3 * max(0, round(rng.gauss(300, 60))))
    few = sizer.expect("lens", 3, 10_000)
    sizer.observe("lens", 3, 3 * max(0, round(rng.gauss(300, 60))))
    enough = sizer.expect("lens", 3, 10_000)
    assert enough > few + 50  # the wider spread of whole answers is now used


def test_answers_count_in_the_order_their_calls_began() -> None:
    """Three calls in flight together: the two short answers come back first but count only
    once the first call (a long answer) is back, so the mean is never the short ones' alone;
    a call that fails releases those behind it."""
    sizer = OutputSizer()
    with sizer.call("lens") as first:
        with sizer.call("lens") as second:
            second(3, 300)
        with sizer.call("lens") as third:
            third(3, 330)
        assert sizer.expect("lens", 3, 5000) == 5000  # nothing counts yet
        first(3, 1500)
    counted = OutputSizer()
    for tokens in (1500, 300, 330):
        counted.observe("lens", 3, tokens)
    assert sizer.expect("lens", 3, 5000) == counted.expect("lens", 3, 5000)
    with sizer.call("lens"):  # fails: no answer
        with sizer.call("lens") as behind:
            behind(3, 900)
        assert sizer.expect("lens", 3, 5000) == counted.expect("lens", 3, 5000)
    counted.observe("lens", 3, 900)
    assert sizer.expect("lens", 3, 5000) == counted.expect("lens", 3, 5000)
