from __future__ import annotations

import json
from pathlib import Path

import pytest

from proposals import tokens
from proposals.tokens import TokenCounter, _conservative_count, install_from_js_tiktoken


def test_conservative_counter_never_below_exact_on_mixed_text() -> None:
    exact = TokenCounter()
    if not exact.exact:
        pytest.skip("tiktoken files not installed (make installs them)")
    samples = [
        "Household savings products in Argentina must disclose the CFT annual rate.",
        "Ley 27.349 — régimen de ahorro; tasa efectiva anual 43,5 % (TEA).",
        "数据 статистика ñandú " * 20,
        "x" * 5000,
        "def f(x):\n    return {'a': [1, 2, 3]}\n" * 30,
    ]
    for text in samples:
        assert _conservative_count(text) >= exact.count(text), text[:40]


def test_truncate_respects_budget_and_keeps_prefix() -> None:
    counter = tokens.get_counter()
    text = "alpha beta gamma delta " * 400
    cut = counter.truncate(text, 50)
    assert text.startswith(cut)
    assert 0 < counter.count(cut) <= 50
    assert counter.truncate("short", 50) == "short"
    assert counter.truncate(text, 0) == ""


def test_conservative_truncate_without_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_load_tiktoken", lambda encoding: None)
    counter = TokenCounter()
    assert not counter.exact
    text = "régimen " * 300
    cut = counter.truncate(text, 40)
    assert text.startswith(cut)
    assert counter.count(cut) <= 40 < counter.count(text)


def test_install_rejects_tables_that_do_not_match_the_hash(tmp_path: Path) -> None:
    ranks = tmp_path / "pkg" / "dist" / "ranks"
    ranks.mkdir(parents=True)
    fake = {"bpe_ranks": "! 0 YQ== Yg==\n", "special_tokens": {}, "pat_str": ""}
    (ranks / "o200k_base.js").write_text("export default " + json.dumps(fake))
    out = tmp_path / "cache"
    assert install_from_js_tiktoken(tmp_path / "pkg", out) == []
    assert not any(out.iterdir())
