"""Request/result models, profile files, prompt templates and events (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from proposals.errors import ConfigError, InputError
from proposals.pipeline import (
    PROMPT_NAMES,
    FailedItem,
    Profile,
    Prompts,
    ProposalRequest,
    RunOptions,
    load_profiles,
)
from proposals.runs import ItemFailed, RunStarted, parse_event

P = [Profile(name="savers", description="young")]


def test_countries_are_validated_uppercased_and_deduplicated() -> None:
    req = ProposalRequest(brief="savings", countries="ar, br,AR", profiles=P)
    assert req.countries == ["AR", "BR"]
    with pytest.raises(ValidationError, match="ISO 3166-1"):
        ProposalRequest(brief="savings", countries=["ARG"], profiles=P)
    with pytest.raises(ValidationError):
        ProposalRequest(brief="savings", countries=[], profiles=P)


def test_per_country_profiles_must_cover_every_country() -> None:
    req = ProposalRequest(
        brief="savings",
        countries=["AR", "BR"],
        profiles={"ar": P, "BR": [*P, Profile(name="farmers")]},
    )
    assert [p.name for p in req.profiles_for("BR")] == ["savers", "farmers"]
    assert len(req.pairs()) == 3
    with pytest.raises(ValidationError, match="no profiles given for BR"):
        ProposalRequest(brief="savings", countries=["AR", "BR"], profiles={"AR": P})
    with pytest.raises(ValidationError, match="duplicate profile"):
        ProposalRequest(brief="savings", countries=["AR"], profiles=[*P, *P])


def test_options_reject_unknown_nodes_and_bad_values() -> None:
    assert RunOptions().themes == 9
    assert RunOptions(models={"synthesize": "gpt-4o"}).models["synthesize"] == "gpt-4o"
    with pytest.raises(ValidationError, match="unknown node"):
        RunOptions(models={"nodeX": "m"})
    with pytest.raises(ValidationError):
        RunOptions(themes=0)


def test_profiles_load_from_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text("- name: a\n  description: first\n- name: b\n")
    assert [p.name for p in load_profiles(y)] == ["a", "b"]
    j = tmp_path / "p.json"
    j.write_text('{"AR": [{"name": "a"}], "BR": [{"name": "b", "description": "x"}]}')
    loaded = load_profiles(j)
    assert isinstance(loaded, dict) and loaded["BR"][0].description == "x"
    bad = tmp_path / "bad.yaml"
    bad.write_text("just a string")
    with pytest.raises(InputError):
        load_profiles(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_profiles(tmp_path / "missing.yaml")


def test_shipped_profiles_file_is_valid() -> None:
    profiles = load_profiles(Path(__file__).resolve().parents[1] / "examples" / "profiles.yaml")
    assert isinstance(profiles, list) and len(profiles) >= 2


def test_prompts_render_deterministically_and_can_be_overridden(tmp_path: Path) -> None:
    builtin = Prompts()
    values = {"brief": "b", "variables": "- k: v", "items": "[#1] x"}
    first = builtin.render("regulation", **values)
    assert first == builtin.render("regulation", **values)
    assert [m["role"] for m in first] == ["system", "user"]
    assert "[#1] x" in first[1]["content"]
    (tmp_path / "regulation.txt").write_text("SYS\n### USER ###\nonly $items")
    custom = Prompts(tmp_path)
    assert custom.render("regulation", **values)[1]["content"] == "only [#1] x"
    assert custom.render("market_fit", **values) == builtin.render("market_fit", **values)
    assert set(PROMPT_NAMES) >= {"analyze_map", "synthesize", "synthesize_reduce"}
    (tmp_path / "feasibility.txt").write_text("no separator")
    with pytest.raises(ConfigError):
        Prompts(tmp_path)


def test_events_round_trip_through_json() -> None:
    started = RunStarted(
        run_id="r", seq=1, countries=["AR"], pairs=2, themes=9, provider="simulator", simulated=True
    )
    failed = ItemFailed(
        run_id="r",
        seq=2,
        failure=FailedItem(
            node="regulation",
            item="regulation T1 AR/x",
            error="boom",
            error_type="RetriesExhausted",
        ),
    )
    for event in (started, failed):
        again = parse_event(event.model_dump_json())
        assert again == event and type(again) is type(event)
