"""The proposal pipeline end to end: real simulator over HTTP, embedded PostgreSQL, the
sample corpus ingested once per session and copied per test (``CREATE DATABASE ... TEMPLATE``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from proposals.config import Settings
from proposals.embeddings import Embedder
from proposals.errors import InputError
from proposals.pipeline import Profile, ProposalRequest, ProposalResult, RunOptions, render_markdown
from proposals.runs import CallEvent, RunEvent, RunFinished, Services, generate, open_services
from proposals.store import Store

PROFILES = [
    Profile(name="young savers", description="urban, smartphone-first, small surpluses"),
    Profile(name="rural families", description="seasonal income, agents and remittances"),
]


@pytest.fixture
async def services(corpus_settings: Settings, embedder: Embedder) -> AsyncIterator[Services]:
    async with open_services(corpus_settings, embedder=embedder) as svc:
        yield svc


def _request(**options: Any) -> ProposalRequest:
    return ProposalRequest(
        brief="savings and microinsurance products for households",
        countries=["ar", "BR"],
        profiles=PROFILES,
        variables={"channel": "mobile app", "risk appetite": "low"},
        options=RunOptions(**{"themes": 3, "proposals_per_pair": 3, **options}),
    )


async def _run(
    request: ProposalRequest, settings: Settings, services: Services, **kw: Any
) -> tuple[ProposalResult, list[RunEvent]]:
    events: list[RunEvent] = []
    async with generate(request, settings, services=services, **kw) as run:
        async for event in run.events():
            events.append(event)
        result = await run.result()
    return result, events


async def _check_citations(result: ProposalResult, services: Services) -> None:
    """Every citation is a real chunk of the proposal's country (or of a country-less doc)."""
    store: Store = services.store
    for p in result.proposals:
        assert p.citations, f"proposal {p.title!r} cites nothing"
        hits = {h.chunk_id: h for h in await store.get_chunks([c.chunk_id for c in p.citations])}
        for c in p.citations:
            assert c.chunk_id in hits, f"citation #{c.chunk_id} is not a stored chunk"
            real = hits[c.chunk_id].citation
            assert real.country in (None, p.country)
            assert (c.title, c.path, c.country) == (real.title, real.path, real.country)


async def test_end_to_end(corpus_settings: Settings, services: Services) -> None:
    result, events = await _run(_request(), corpus_settings, services)
    assert result.status == "completed", result.failed
    assert result.simulated
    assert len(result.themes) == 3
    pairs = {(p.country, p.profile) for p in result.proposals}
    assert pairs == {(c, p.name) for c in ("AR", "BR") for p in PROFILES}
    assert all(len(result.proposals_for(c, p)) <= 3 for c, p in pairs)
    assert {f.lens for f in result.findings} == {
        "market_fit",
        "regulation",
        "feasibility",
        "positioning",
    }
    await _check_citations(result, services)
    # events: numbered 1..n without gaps, last one carries the result, also stored in the log
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert isinstance(events[-1], RunFinished) and events[-1].result is not None
    types = {e.type for e in events}
    assert {"run_started", "node_started", "batch_started", "call", "proposal"} <= types
    assert events[-1].usage.calls == result.usage.calls > 0
    report = render_markdown(result)
    assert "SIMULATED" in report and "## AR" in report and "### young savers" in report


def _signature(result: ProposalResult) -> list[tuple[Any, ...]]:
    return [
        (p.country, p.profile, p.rank, p.title, p.summary, tuple(c.chunk_id for c in p.citations))
        for p in result.proposals
    ]


async def test_tiny_window_batches_and_tree_reduces(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    # The pipeline packs for 8k while the server only accepts 5.5k (calls ask for less output
    # than packing reserves, so 7k would take them all): packing, the split on the server's
    # overflow answer and the synthesis tree reduce all have to work.
    request = _request(context_window=8192, output_reserve=3600, proposals_per_pair=2)
    request = request.model_copy(update={"countries": ["AR"]})
    async with open_services(
        corpus_settings, embedder=embedder, simulator_overrides={"context_window": 5500}
    ) as svc:
        result, events = await _run(request, corpus_settings, svc)
        stats = svc.simulator.stats()
        await _check_citations(result, svc)
    assert result.status == "completed", result.failed
    assert {(p.country, p.profile) for p in result.proposals} == {("AR", p.name) for p in PROFILES}
    synth_calls = [
        e for e in events if e.type == "call" and e.node == "synthesize" and e.phase == "finished"
    ]
    assert len(synth_calls) > 2 * len(PROFILES)  # drafts per batch, then merges
    lens_batches = [e for e in events if e.type == "batch_started" and e.node == "regulation"]
    assert len(lens_batches) > 1
    assert stats["rejects"].get("context_length", 0) > 0  # the server did refuse some calls
    assert not [e for e in events if e.type == "item_failed"]


async def test_flaky_provider_gives_the_same_proposals(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    request = _request()
    async with open_services(corpus_settings, embedder=embedder, cache=False) as svc:
        clean, _ = await _run(request, corpus_settings, svc)
    flaky_settings = corpus_settings.model_copy(
        update={"simulator_profile": "flaky", "llm_timeout_s": 1.5}
    )
    async with open_services(
        flaky_settings,
        embedder=embedder,
        cache=False,
        simulator_overrides={
            "time_scale": 0.01,
            "fault_500": 0.1,
            "fault_503": 0.1,
            "fault_reset": 0.05,
        },
        gateway_overrides={"backoff_base_s": 0.05, "backoff_max_s": 0.5, "max_retries": 10},
    ) as svc:
        flaky, _ = await _run(request, flaky_settings, svc)
        stats = svc.simulator.stats()
    assert flaky.status == "completed", flaky.failed
    assert flaky.usage.retries > 0
    assert sum(stats["rejects"].values()) > 0
    assert _signature(flaky) == _signature(clean)
    assert [t.title for t in flaky.themes] == [t.title for t in clean.themes]


async def test_failing_item_is_listed_and_siblings_complete(
    corpus_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    # A regulation prompt larger than the window: every regulation call overflows.
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    filler = "This sentence only makes the prompt too long for the window. " * 4000
    (prompts / "regulation.txt").write_text(f"{filler}\n### USER ###\n$brief $variables $items")
    settings = corpus_settings.model_copy(update={"prompts_dir": prompts})
    async with open_services(settings, embedder=embedder) as svc:
        result, events = await _run(_request(), settings, svc)
    assert result.status == "completed_with_errors"
    failed = {f.item for f in result.failed}
    expected = {
        f"regulation T{t} {c}/{p.name}" for t in (1, 2, 3) for c in ("AR", "BR") for p in PROFILES
    }
    assert failed == expected
    assert {f.error_type for f in result.failed} == {"ContextOverflowError"}
    assert len([e for e in events if e.type == "item_failed"]) == len(expected)
    assert "regulation" not in {f.lens for f in result.findings}
    assert len({(p.country, p.profile) for p in result.proposals}) == 4  # siblings went on
    assert "## Failures" in render_markdown(result)


async def test_budget_stop_keeps_partial_results(
    corpus_settings: Settings, services: Services
) -> None:
    result, events = await _run(_request(max_tokens=40_000), corpus_settings, services)
    assert result.status == "stopped_budget"
    assert result.stop_reason and "budget" in result.stop_reason
    assert result.themes and result.findings  # what was done is kept
    # Pairs whose synthesis finished before the stop keep their proposals; not every pair did.
    done = {(p.country, p.profile) for p in result.proposals}
    assert len(done) < len(_request().pairs())
    assert result.usage.total_tokens <= 40_000
    assert any(e.type == "warning" and e.kind == "budget" for e in events)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped_budget"


async def test_cost_budget_stops_the_run_within_its_dollars(
    corpus_settings: Settings, services: Services
) -> None:
    # gpt-4o-mini's prices: a few thousand tokens cost a fraction of a cent, so $0.004 is
    # enough for analysis but not for a whole run.
    result, events = await _run(_request(max_cost_usd=0.004), corpus_settings, services)
    assert result.status == "stopped_budget"
    assert result.stop_reason and "cost budget of $0.0040" in result.stop_reason
    assert result.themes  # what was done is kept
    assert 0 < result.usage.cost_usd <= 0.004
    assert any(e.type == "warning" and e.kind == "budget" for e in events)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "stopped_budget"


class _Interrupt(Exception):
    pass


async def test_interrupted_run_resumes_from_checkpoint(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    from proposals.runs import EventLog, RunRegistry, resume

    request = _request()
    async with open_services(corpus_settings, embedder=embedder) as svc:
        reference, _ = await _run(request, corpus_settings, svc, run_id="reference")
    run_id = None
    async with open_services(corpus_settings, embedder=embedder, cache=False) as svc:
        with pytest.raises(_Interrupt):
            async with generate(request, corpus_settings, services=svc) as run:
                run_id = run.run_id
                async for event in run.events():
                    if event.type == "batch_finished" and event.node in (
                        "market_fit",
                        "regulation",
                    ):
                        raise _Interrupt  # the caller gives up mid-fan-out
        record = await RunRegistry(svc.database).get(run_id)
        assert record is not None and record.status == "cancelled"  # with its terminal event
        before = await EventLog(svc.database).last_seq(run_id)
    # a new process: new services, same database
    async with open_services(corpus_settings, embedder=embedder, cache=False) as svc:
        async with resume(run_id, corpus_settings, services=svc) as run:
            events = [e async for e in run.events()]
            result = await run.result()
        stored = await EventLog(svc.database).read(run_id)
    assert result.status == "completed"
    assert events[0].type == "run_started" and events[0].resumed and events[0].seq == before + 1
    assert not any(e.type == "node_started" and e.node in ("retrieve", "analyze") for e in events)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert _signature(result) == _signature(reference)


async def test_resume_counts_calls_whose_events_were_lost(
    corpus_settings: Settings, embedder: Embedder
) -> None:
    """Issue 8, item 7: a holder killed right after calls were answered (and cached) but
    before their events were stored; the resumed run still counts them, from the usage log."""
    from proposals.runs import resume

    async with open_services(corpus_settings, embedder=embedder) as svc:
        result, events = await _run(_request(themes=2), corpus_settings, svc)
        answered = [e for e in events if isinstance(e, CallEvent) and e.phase == "finished"]
        lost_from = answered[-3].seq
        kept = [e for e in events if e.seq < lost_from][-1]
        async with svc.database.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM run_events WHERE run_id = %s AND seq >= %s", (result.run_id, lost_from)
            )
            # As the killed holder left it: running, its lease run out, events up to the cut.
            await conn.execute(
                "UPDATE runs SET status = 'running', lease_until = now() - interval '1 second',"
                " finished_at = NULL, result = NULL, last_seq = %s, usage = %s::jsonb"
                " WHERE id = %s",
                (lost_from - 1, kept.usage.model_dump_json(), result.run_id),
            )
    async with (
        open_services(corpus_settings, embedder=embedder) as svc,
        resume(result.run_id, corpus_settings, services=svc) as run,
    ):
        seen = [e async for e in run.events()]
        resumed = await run.result()
    assert kept.usage.calls < result.usage.calls
    assert resumed.usage.calls == result.usage.calls
    assert resumed.usage.prompt_tokens == result.usage.prompt_tokens
    assert resumed.usage.cost_usd == pytest.approx(result.usage.cost_usd)
    # Their events are stored again, from the usage log: the accounting per node, folded from
    # the events, counts every answered call once (the resumed cache hits come on top).
    recovered = [
        e
        for e in seen
        if isinstance(e, CallEvent) and e.phase == "finished" and "recovered" in (e.detail or "")
    ]
    lost = [e for e in answered if e.seq >= lost_from]
    assert sorted((e.node, e.prompt_tokens, e.completion_tokens) for e in recovered) == sorted(
        (e.node, e.prompt_tokens, e.completion_tokens) for e in lost
    )
    for node, totals in result.usage_by_node.items():
        again = resumed.usage_by_node[node]
        assert (again.calls, again.prompt_tokens, again.completion_tokens) == (
            totals.calls,
            totals.prompt_tokens,
            totals.completion_tokens,
        ), node


async def test_runs_command_lists_runs_and_replays_events(
    corpus_settings: Settings, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    from proposals.cli import build_parser

    result, events = await _run(_request(themes=2), corpus_settings, services)
    capsys.readouterr()

    args = build_parser().parse_args(["runs", "--json"])
    assert await args.handler(args, corpus_settings) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [result.run_id]
    assert listed[0]["status"] == result.status
    assert listed[0]["proposals"] == len(result.proposals)

    args = build_parser().parse_args(["runs", result.run_id, "--after", "3", "--json"])
    assert await args.handler(args, corpus_settings) == 0
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in replayed] == [e.seq for e in events if e.seq > 3]
    assert replayed[-1]["type"] == "run_finished"

    args = build_parser().parse_args(["runs", "nope"])
    with pytest.raises(InputError, match="no run with id"):
        await args.handler(args, corpus_settings)


async def test_rerun_retries_failed_items_and_reuses_answered_calls(
    corpus_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    from proposals.cli import build_parser

    # First run: every regulation call overflows (a broken prompt override), so those items fail.
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    filler = "This sentence only makes the prompt too long for the window. " * 4000
    (prompts / "regulation.txt").write_text(f"{filler}\n### USER ###\n$brief $variables $items")
    broken = corpus_settings.model_copy(update={"prompts_dir": prompts})
    async with open_services(broken, embedder=embedder) as svc:
        first, first_events = await _run(_request(), broken, svc)
    assert first.status == "completed_with_errors" and first.failed
    answered = [e for e in first_events if isinstance(e, CallEvent) and e.phase == "finished"]
    # synthesis depends on the failed items' findings, so its prompts change on a rerun
    reusable = [e for e in answered if e.node != "synthesize"]

    # The prompt is fixed; --rerun runs the stored request again as a new run.
    out = tmp_path / "rerun.json"
    args = build_parser().parse_args(
        ["generate", "--rerun", first.run_id, "--quiet", "--json", str(out)]
    )
    assert await args.handler(args, corpus_settings) == 0
    second = ProposalResult.model_validate_json(out.read_text(encoding="utf-8"))
    assert second.run_id != first.run_id
    assert second.status == "completed" and not second.failed
    assert "regulation" in {f.lens for f in second.findings}
    # what the first run had answered (analysis, the other lenses) came from the cache
    assert len(answered) == first.usage.calls
    assert second.usage.cached_calls == len(reusable) > 0
    assert second.usage.calls < first.usage.calls

    args = build_parser().parse_args(["generate", "--rerun", "nope", "--quiet"])
    with pytest.raises(InputError, match="no run with id"):
        await args.handler(args, corpus_settings)


_TITLE_END_WORDS = {"a", "an", "the", "of", "for", "and", "or", "to", "in", "with", "where"}


async def test_simulated_report_reads_as_whole_sentences(
    corpus_settings: Settings, services: Services
) -> None:
    """The offline demo's first impression (issue 8, item 8): titles are whole noun phrases,
    texts are whole sentences, no notice or boilerplate line of the corpus is quoted."""
    result, _ = await _run(_request(themes=4), corpus_settings, services)
    titles = [t.title for t in result.themes] + [p.title for p in result.proposals]
    texts = [t.description for t in result.themes] + [f.text for f in result.findings]
    for p in result.proposals:
        texts += [p.summary, p.value_proposition, p.regulatory_notes, p.feasibility]
        texts += [*p.key_features, *p.risks]
    for title in titles:
        words = title.split()
        assert 2 <= len(words) <= 5 and title[0].isupper(), title
        assert words[-1].lower() not in _TITLE_END_WORDS, title
        assert not any(ch in title for ch in "()[]:;"), title
    for text in texts:
        assert text[0].isupper() or text[0].isdigit(), text
        assert text.rstrip()[-1] in ".!?", text
        assert text.count("(") == text.count(")"), text
    report = render_markdown(result)
    for notice in ("FICTIONAL", "invented", "sample corpus"):
        assert notice not in report.split("\n", 2)[-1], notice


async def test_a_country_without_documents_of_its_own_is_warned_about(
    corpus_settings: Settings, services: Services
) -> None:
    """Issue 8, item 5: PE has no document in the sample corpus, only global ones apply."""
    request = ProposalRequest(
        brief="savings products for households",
        countries=["AR", "PE"],
        profiles=PROFILES[:1],
        options=RunOptions(themes=1, proposals_per_pair=1),
    )
    result, events = await _run(request, corpus_settings, services)
    expected = "retrieve: no documents of PE's own matched"
    assert any(w.startswith(expected) for w in result.warnings)
    assert not any("AR's own" in w for w in result.warnings)
    kinds = [e.kind for e in events if e.type == "warning"]  # type: ignore[attr-defined]
    assert "no_country_documents" in kinds
    assert expected in render_markdown(result)
