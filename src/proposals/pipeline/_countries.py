"""``country``: the pipelined lens and synthesis work of one country (one graph task each).

The stage-by-stage path waits for every search before the first lens call and for every lens
call before the first synthesis. Here a country plans its evidence lens by lens (countries
take turns, lowest index first) and starts each lens's batches as soon as they are packed,
ordered so its (country, profile) pairs finish one after another, longest calls first; a
pair's synthesis starts once the batches holding its items are done. The batches are the
ones the stage-by-stage path packs (per lens and country), so the prompts, and with them
the results, are the same.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, TypedDict

from langgraph.runtime import Runtime

from ._context import PipelineContext
from ._evidence import lens_jobs, pack_batches, prefetch_queries, search_jobs
from ._lenses import run_batch
from ._models import LENSES, Lens
from ._state import LensInput, SynthesisInput
from ._synthesize import synthesize
from ._traced import traced

__all__ = ["CountryInput", "country"]

_MERGED = ("findings", "failed", "warnings", "stops", "lens_done", "proposals", "synth_done")


class CountryInput(TypedDict):
    """What one ``country`` task receives through ``Send``."""

    country: str
    index: int
    """Position of the country in the request (planning turns go lowest first)."""
    themes: list[dict[str, Any]]


def _pair_rank(batch: dict[str, Any], profiles: list[str]) -> tuple[int, int]:
    """Order of a batch: by the last pair it serves, then longest (most tokens) first."""
    last = max(profiles.index(it["profile"]["name"]) for it in batch["items"])
    return last, -int(batch["tokens"])


async def country(state: CountryInput, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Plan, run the lenses of and synthesise every pair of one country."""
    ctx = runtime.context
    req = ctx.request
    sched = ctx.schedule
    name, themes = state["country"], state["themes"]
    profiles = req.profiles_for(name)
    names = [p.name for p in profiles]
    countries = len(req.countries)
    sched.begin(ctx, items=len(lens_jobs(ctx, themes, req.countries)), pairs=len(req.pairs()))
    out: dict[str, list[Any]] = {k: [] for k in _MERGED}
    batch_tasks: list[tuple[dict[str, Any], asyncio.Task[dict[str, Any]]]] = []

    def lens_task(lens: Lens, evidence: dict[int, Any]) -> Any:
        async def one(s: LensInput, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
            update = await run_batch(ctx, lens, s["batch"], s["themes"], evidence)
            sched.batch_done(ctx, lens, len(update.get("failed") or []), countries)
            if update.get("stops"):
                sched.stopped = True
            return update

        return traced(lens, one)

    async def pair(profile: str, mine: list[asyncio.Task[dict[str, Any]]]) -> dict[str, Any]:
        updates = [await t for t in mine]
        if sched.stopped or any(u.get("stops") for u in updates):
            return {}
        findings = [f for u in updates for f in u.get("findings") or [] if f["profile"] == profile]
        payload = SynthesisInput(
            country=name,
            profile=profiles[names.index(profile)].model_dump(),
            themes=themes,
            findings=findings,
        )
        update = await traced("synthesize", synthesize)(payload, runtime)
        if update.get("stops"):
            sched.stopped = True
        return update

    async with asyncio.TaskGroup() as group:
        async with sched.turn(state["index"]):
            with ctx.trace.task("plan", single=False):
                # Every query of the run in one batch, as the stage-by-stage path embeds them.
                await prefetch_queries(sched.store(ctx), lens_jobs(ctx, themes, req.countries))
            counts: Counter[str] = Counter()
            for lens in LENSES:
                if sched.stopped:
                    break
                jobs = lens_jobs(ctx, themes, [name])
                jobs = [j for j in jobs if j[0] == lens]
                with ctx.trace.task("plan", single=False):
                    results = await search_jobs(ctx, sched.store(ctx), jobs)
                    batches, warnings = pack_batches(ctx, jobs, results)
                out["warnings"] += warnings
                counts.update(b["lens"] for b in batches)
                evidence = {h.chunk_id: h for hits in results for h in hits}
                run = lens_task(lens, evidence)
                for batch in sorted(batches, key=lambda b: _pair_rank(b, names)):
                    payload = LensInput(batch=batch, themes=themes)
                    batch_tasks.append((batch, group.create_task(run(payload, runtime))))
            sched.planned(ctx, counts, countries)
        pair_tasks = [
            group.create_task(
                pair(
                    profile,
                    [
                        t
                        for b, t in batch_tasks
                        if any(it["profile"]["name"] == profile for it in b["items"])
                    ],
                )
            )
            for profile in names
        ]
    # Merge in a fixed order (planned batches, then pairs), whatever order they finished in.
    for update in [t.result() for _, t in batch_tasks] + [t.result() for t in pair_tasks]:
        for key in _MERGED:
            out[key] += update.get(key) or []
    return {**{k: v for k, v in out.items() if v}, "planned": [b["lens"] for b, _ in batch_tasks]}
