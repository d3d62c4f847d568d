"""Lens batches queued last are packed smaller under a known token quota that covers the run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from proposals.pipeline import PipelineContext, Prompts, ProposalRequest
from proposals.pipeline._evidence import batch_items, lens_jobs, pack_batches
from proposals.pipeline._models import LENSES
from proposals.store import Citation, SearchHit

COUNTRIES = ["AR", "BR", "MX"]
THEMES = [{"id": f"t{i}", "title": f"Theme {i}", "description": "savings"} for i in range(6)]


def test_batch_size_falls_with_the_work_left() -> None:
    sizes = [batch_items(3, position, 20) for position in range(20)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[:12] == [3] * 12  # whole batches until 40% of the groups is left
    assert sizes[12:16] == [2] * 4 and sizes[16:] == [1] * 4
    assert [batch_items(1, p, 20) for p in range(20)] == [1] * 20


def _ctx(tpm: int | None) -> PipelineContext:
    request = ProposalRequest(
        brief="savings products",
        countries=COUNTRIES,
        profiles=[{"name": "gig"}, {"name": "family"}],
    )
    return PipelineContext(
        run_id="tail",
        request=request,
        # Only the gateway's configured quota is read while packing.
        gateway=SimpleNamespace(config=SimpleNamespace(tpm=tpm)),  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        prompts=Prompts(),
        default_model="m",
        context_window=32_768,
        output_reserve=4_096,
    )


def _planned(tpm: int | None) -> tuple[PipelineContext, list[Any], list[list[SearchHit]]]:
    ctx = _ctx(tpm)
    jobs = lens_jobs(ctx, THEMES, COUNTRIES)
    hits = [
        [
            SearchHit(
                chunk_id=100 * i + k,
                text=f"evidence {k} about {country} savings and payments " * 20,
                score=1.0,
                citation=Citation(chunk_id=100 * i + k, title="doc", path="doc.txt"),
            )
            for k in range(3)
        ]
        for i, (_, country, _, _) in enumerate(jobs)
    ]
    return ctx, jobs, hits


def _packed(tpm: int | None) -> list[dict[str, Any]]:
    batches, _ = pack_batches(*_planned(tpm))
    return batches


def _largest(batches: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for b in batches:
        key = (b["lens"], b["items"][0]["country"])
        out[key] = max(out.get(key, 0), len(b["items"]))
    return out


def test_a_quota_that_covers_the_run_shrinks_the_last_batches() -> None:
    plain, shaped = _packed(None), _packed(10_000_000)
    order = [(lens, c) for c in COUNTRIES for lens in LENSES]  # the pipelined queue order
    sizes = _largest(shaped)
    assert [sizes[k] for k in order] == sorted((sizes[k] for k in order), reverse=True)
    assert sizes[order[0]] == 3 and sizes[order[-1]] == 1
    assert set(_largest(plain).values()) == {3}
    assert len(shaped) > len(plain)

    # The same items either way, each once.
    def keys(batches: list[dict[str, Any]]) -> list[str]:
        return sorted(it["key"] for b in batches for it in b["items"])

    assert keys(shaped) == keys(plain)
    assert _packed(10_000_000) == shaped  # the same request packs the same batches


def test_a_quota_the_run_exceeds_keeps_whole_batches() -> None:
    # About 2.5k tokens a lens item at its cap, 144 items: a 100k quota is exceeded.
    assert _largest(_packed(100_000)) == _largest(_packed(None))


def test_one_group_at_a_time_packs_as_all_at_once() -> None:
    # The pipelined path packs one (lens, country) group at a time, the staged path all of
    # them together: the same batches, so the same prompts and results.
    ctx, jobs, hits = _planned(10_000_000)
    together, _ = pack_batches(ctx, jobs, hits)
    apart: list[dict[str, Any]] = []
    for country in COUNTRIES:
        for lens in LENSES:
            mine = [(j, h) for j, h in zip(jobs, hits, strict=True) if j[:2] == (lens, country)]
            apart += pack_batches(ctx, [j for j, _ in mine], [h for _, h in mine])[0]
    assert sorted(apart, key=lambda b: b["id"]) == sorted(together, key=lambda b: b["id"])
    assert len({len(b["items"]) for b in together}) == 3
