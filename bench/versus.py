"""Whole runs side by side: this project against the strategies that break, on provider quotas.

The same full-scale request as ``bench.full_scale`` (9 themes x 5 countries x 4 profiles x 4
lenses, 32k window) against the same simulator profiles, under four strategies:

1. ``fanout``: one LangGraph ``Send`` per item, no limit (the reference's first version);
2. ``grouped50``: items grouped 3 to a call, at most 50 calls at once (what it settled on);
3. ``max_concurrency``: one ``Send`` per item, LangGraph's ``max_concurrency=100``;
4. ``proposals``: this project (packing + the adaptive gateway), the real pipeline, with no
   limit configured: the gateway learns the provider's from its headers and push-back.

1-3 are built on LangGraph with ``langchain-openai`` (``bench/_baselines.py``; the ``bench``
extra). Per profile the strategies alternate in one invocation (the order rotates each round),
each run in a fresh process against one simulator child (reset before every run) on one
corpus ingested once; every figure is the median of ``RUNS`` runs.

Per run: wall time; the bound = max(total tokens / TPM, calls / RPM, critical path latency),
where calls and tokens are the run's own successful calls and the critical path is the
longest answer of each dependent stage (analyze, lenses, synthesis) under the profile's
latency model; wall / bound; calls, retries (HTTP attempts beyond one per call), failed items,
tokens (and tokens charged against TPM, which counts ``max_tokens``), client CPU seconds, peak
RSS and its growth during the run.

Time compression: each profile runs at its own time scale (``PROFILES``), chosen so that its
bound is a few wall seconds; latency and the rate windows scale together, so every ratio
between them holds. What does not scale is the client's CPU per call, which therefore weighs
more here than against a real provider (said with the results).

Results: ``bench/results/versus.json`` and ``bench/results/versus.png``. Run:
``.venv/bin/python -m bench versus`` (``make bench`` runs it with the others; set
``VERSUS_RUNS`` / ``VERSUS_PROFILES=azure-240k,flaky`` for a shorter look, and
``VERSUS_DATA_DIR`` to keep the ingested corpus between invocations).

``python -m bench.versus --realtime [profile ...]`` runs this project (and grouped-50) at time
scales where the client's CPU is small next to the bound (``bench/_realtime.py``), into the
JSON's ``realtime`` section.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._memory import rss_mib

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "versus.json"
PICTURE = ROOT / "bench" / "results" / "versus.png"
PROFILES: dict[str, float] = {
    "flaky": 0.05,
    "openai-tier2-mini": 0.05,
    "azure-240k": 0.02,
    "openai-tier1-mini": 0.015,
}
"""Profile -> time scale (wall seconds per simulated second)."""
STRATEGIES = ("fanout", "grouped50", "max_concurrency", "proposals")
QUOTA_KNOWN = "proposals-quota"
"""This project with the profile's token quota configured (``llm_tpm``), as a user who knows
it would; the real-time runs only (``VERSUS_REALTIME_STRATEGIES``)."""
RUNS = int(os.environ.get("VERSUS_RUNS", "3"))
TIMEOUT_S = 10.0
"""Deadline of one HTTP attempt, the same for every strategy (the longest answer takes under
4 wall seconds at these time scales)."""
STALL_S = 12.0
"""A stalled request (``flaky``) hangs this long: past every client's deadline."""
COUNTRIES = ["AR", "BR", "MX", "CL", "CO"]
_PROFILES = [
    ("young urban savers", "18-30, smartphone-first, irregular surpluses"),
    ("rural smallholder families", "seasonal income, agents, remittances"),
    ("informal micro-entrepreneurs", "daily cash flows, no payroll, shop owners"),
    ("retirees on pensions", "fixed monthly income, low digital skills"),
]
_STAGES = {"analyze": "analyze", "synthesize": "synthesize"}


def _request() -> Any:
    from proposals.pipeline import Profile, ProposalRequest, RunOptions

    return ProposalRequest(
        brief="savings, microinsurance and payment products for low- and middle-income households",
        countries=COUNTRIES,
        profiles=[Profile(name=n, description=d) for n, d in _PROFILES],
        variables={"channel": "mobile app and agents", "risk appetite": "low"},
        options=RunOptions(themes=9, proposals_per_pair=5, evidence_k=8, context_window=32_768),
    )


def _settings(data_dir: Path, timeout_s: float = TIMEOUT_S) -> Any:
    from proposals.config import Settings

    return Settings(data_dir=data_dir, context_window=32_768, llm_timeout_s=timeout_s)


class _Peak:
    """Samples this process's RSS every 20 ms while the run lasts."""

    def __init__(self) -> None:
        self.start = rss_mib()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# one run, in a fresh process


async def _prepare(data_dir: Path) -> None:
    from proposals.db import Database
    from proposals.embeddings import embedder_from_settings
    from proposals.ingest import ingest

    settings = _settings(data_dir)
    database = await Database.open(settings)
    try:
        await ingest(
            [ROOT / "examples" / "corpus"],
            database=database,
            embedder=embedder_from_settings(settings),
        )
    finally:
        await database.close()


async def _ours(request: Any, settings: Any, database: Any, embedder: Any, url: str) -> dict:
    from proposals.llm import CallFinished
    from proposals.runs import generate, open_services

    longest: dict[str, int] = {}
    spans: dict[str, list[float]] = {}
    begun: dict[int | None, float] = {}
    timeline: list[tuple[str, float, float, int]] = []
    started = time.monotonic()

    def longest_answer(event: Any) -> None:
        # The answer's own tokens: an answer cut at its expected size and asked again must
        # not count as one long answer in the critical path.
        if isinstance(event, CallFinished):
            stage = _STAGES.get(event.node or "", "lens")
            tokens = event.answer_tokens or event.usage.completion_tokens
            longest[stage] = max(longest.get(stage, 0), tokens)

    async with open_services(
        settings, database=database, embedder=embedder, cache=False, simulator_url=url
    ) as services:
        services.gateway.subscribe(None, longest_answer)
        async with generate(request, settings, services=services) as run:
            async for event in run.events():
                now = time.monotonic()
                if event.type in ("node_started", "node_finished"):
                    spans.setdefault(event.node, []).append(round(now - started, 2))
                if event.type == "call" and event.phase == "started":
                    begun[event.call_id] = now
                if event.type == "call" and event.phase == "finished":
                    stage = _STAGES.get(event.node or "", "lens")
                    tokens = event.prompt_tokens + event.completion_tokens
                    timeline.append((stage, begun.pop(event.call_id, now), now, tokens))
            result = await run.result()
        stats = services.gateway.stats()
    return {
        "status": result.status,
        "failed_items": len(result.failed),
        "failed_calls": stats.failed,
        "max_output": longest,
        "proposals": len(result.proposals),
        "gateway_limit": stats.limit,
        "peak_in_flight": stats.peak_in_flight,
        "gateway": {
            "learned_ceiling": stats.learned_ceiling,
            "limit_cuts": stats.limit_cuts,
            "retries_by_cause": stats.retries_by_cause,
            "rate_wait_s": round(stats.rate_wait_s, 2),
        },
        "node_spans_s": {node: [times[0], times[-1]] for node, times in spans.items()},
        "timeline": timeline,
    }


async def _baseline(strategy: str, request: Any, store: Any, url: str, timeout_s: float) -> dict:
    from bench._baselines import Baseline

    baseline = Baseline(strategy, request, store, url, timeout_s=timeout_s)  # type: ignore[arg-type]
    state = await baseline.run()
    c = baseline.counters
    return {
        "status": "completed_with_errors" if c.failed_items else "completed",
        "failed_items": len(c.failed_items),
        "failed_calls": c.failed_calls,
        "max_output": c.max_output,
        "proposals": len(state.get("proposals") or []),
        "timeline": c.timeline,
    }


async def _one(
    strategy: str,
    profile_name: str,
    scale: float,
    url: str,
    data_dir: Path,
    timeout_s: float = TIMEOUT_S,
) -> dict:
    from proposals.db import Database
    from proposals.embeddings import embedder_from_settings
    from proposals.simulator import get_profile
    from proposals.store import Store
    from proposals.tokens import count_tokens

    profile = get_profile(profile_name, time_scale=scale)
    settings = _settings(data_dir, timeout_s)
    if strategy == QUOTA_KNOWN:
        # The quota in tokens per wall-clock minute (the simulator's minute is 60 * scale s).
        settings = settings.model_copy(
            update={"llm_tpm": round(profile.tpm / scale) if profile.tpm else None}
        )
    request = _request()
    embedder = embedder_from_settings(settings)
    await embedder.embed(["warm the model up"])
    count_tokens("warm the tokenizer up")
    database = await Database.open(settings)
    root = url.rsplit("/v1", 1)[0]
    try:
        async with httpx.AsyncClient() as http:
            (await http.post(root + "/sim/reset")).raise_for_status()
        cpu0 = _cpu_s()
        load0 = os.getloadavg()[0]
        with _Peak() as memory:
            started = time.monotonic()
            if strategy in ("proposals", QUOTA_KNOWN):
                out = await _ours(request, settings, database, embedder, url)
            else:
                store = Store(database, embedder)
                out = await _baseline(strategy, request, store, url, timeout_s)
            wall = time.monotonic() - started
        cpu = _cpu_s() - cpu0
        async with httpx.AsyncClient() as http:
            sim = (await http.get(root + "/sim/stats")).json()
    finally:
        await database.close()
    calls = sim["completed"]
    attempts = sim["requests"] + sim["rejects"]["connection_refused"]
    minute = 60.0 * scale
    latest = out["max_output"]
    critical = sum(
        profile.latency_s(latest[s]) for s in ("analyze", "lens", "synthesize") if s in latest
    )
    bounds = {
        "tokens": sim["total_tokens"] / profile.tpm * minute if profile.tpm else 0.0,
        "calls": calls / profile.rpm * minute if profile.rpm else 0.0,
        "critical_path": critical,
    }
    bound = max(bounds.values())
    per_s = profile.tpm / minute if profile.tpm else None
    charged_ratio = sim["charged_tokens"] / max(1, sim["total_tokens"])
    return {
        "strategy": strategy,
        "profile": profile_name,
        "time_scale": scale,
        "status": out["status"],
        "wall_s": round(wall, 3),
        "bound_s": round(bound, 3),
        "bound_parts_s": {k: round(v, 3) for k, v in bounds.items()},
        "binding": max(bounds, key=lambda k: bounds[k]),
        "wall_over_bound": round(wall / bound, 3) if bound else None,
        "charged_bound_s": round(sim["charged_tokens"] / profile.tpm * minute, 3)
        if profile.tpm
        else None,
        "calls": calls,
        "retries": max(0, attempts - calls - out["failed_calls"]),
        "failed_items": out["failed_items"],
        "failed_calls": out["failed_calls"],
        "proposals": out["proposals"],
        "prompt_tokens": sim["prompt_tokens"],
        "completion_tokens": sim["completion_tokens"],
        "total_tokens": sim["total_tokens"],
        "charged_tokens": sim["charged_tokens"],
        "rejects": {k: v for k, v in sim["rejects"].items() if v},
        "peak_in_flight_at_provider": sim["peak_in_flight"],
        "client_cpu_s": round(cpu, 2),
        "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "phases": phases(out["timeline"], started, wall, per_s, charged_ratio),
        "peak_rss_mib": round(memory.peak, 1),
        "rss_growth_mib": round(memory.peak - memory.start, 1),
        **{
            k: out[k]
            for k in ("gateway_limit", "peak_in_flight", "gateway", "node_spans_s")
            if k in out
        },
    }


def phases(
    timeline: list[Any], started: float, wall: float, tokens_per_s: float | None, ratio: float
) -> dict[str, float | None]:
    """A run's wall time in three parts: ``start`` (until its first lens call), ``middle``
    (until its last lens call is answered), ``tail`` (the rest: the last syntheses); and
    ``middle_quota``, the seconds the TPM quota needs for the tokens charged by calls answered
    during the middle (each call's tokens times the run's charged / used ratio), so
    ``middle / middle_quota`` says how far the middle is from quota-bound."""
    lens = [(t0, t1) for stage, t0, t1, _ in timeline if stage == "lens"]
    if not lens:
        return {"start": None, "middle": None, "tail": None, "middle_quota": None}
    first = min(t0 for t0, _ in lens) - started
    last = max(t1 for _, t1 in lens) - started
    used = sum(tok for _, _, t1, tok in timeline if first <= t1 - started <= last)
    quota = used * ratio / tokens_per_s if tokens_per_s else None
    return {
        "start": round(first, 3),
        "middle": round(last - first, 3),
        "tail": round(wall - last, 3),
        "middle_quota": round(quota, 3) if quota is not None else None,
    }


def _child_main(args: list[str]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for key in list(os.environ):
        if key.startswith(("OPENAI_", "AZURE_OPENAI_", "PROPOSALS_")):
            del os.environ[key]
    if args[0] == "--prepare":
        asyncio.run(_prepare(Path(args[1])))
        return
    strategy, profile, scale, url, data_dir, out = args[1:7]
    timeout_s = float(args[7]) if len(args) > 7 else TIMEOUT_S
    result = asyncio.run(_one(strategy, profile, float(scale), url, Path(data_dir), timeout_s))
    Path(out).write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# the comparison


_MEDIANS = (
    "wall_s",
    "bound_s",
    "wall_over_bound",
    "calls",
    "retries",
    "failed_items",
    "total_tokens",
    "charged_tokens",
    "client_cpu_s",
    "peak_rss_mib",
    "rss_growth_mib",
)


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def _allows_over_50(profile_name: str, scale: float, ours: list[dict]) -> bool:
    """Whether the quota admits more than 50 calls in flight (Little's law on our calls)."""
    from proposals.simulator import get_profile

    profile = get_profile(profile_name, time_scale=scale)
    run = ours[0]
    prompt = run["total_tokens"] - run["completion_tokens"]
    mean_p, mean_c = prompt / run["calls"], run["completion_tokens"] / run["calls"]
    rps = profile.theoretical_rps(round(mean_p), round(mean_c))
    return rps * profile.latency_s(round(mean_c)) > 50


def _spawn(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "bench.versus", *args], cwd=ROOT, check=True)


def run_child(
    strategy: str,
    profile: str,
    scale: float,
    url: str,
    data_dir: Path,
    out: Path,
    timeout_s: float = TIMEOUT_S,
) -> dict[str, Any]:
    """One run (:func:`_one`) in a fresh process; its result."""
    _spawn(["--one", strategy, profile, str(scale), url, str(data_dir), str(out), str(timeout_s)])
    return json.loads(out.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _picture(summary: dict[str, dict[str, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = list(summary)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.2
    for i, strategy in enumerate(STRATEGIES):
        xs = [p + (i - 1.5) * width for p in range(len(profiles))]
        ratio = [summary[p][strategy]["wall_over_bound"] or 0 for p in profiles]
        failed = [summary[p][strategy]["failed_items"] or 0 for p in profiles]
        ax1.bar(xs, ratio, width, label=strategy)
        ax2.bar(xs, failed, width, label=strategy)
    ax1.axhline(1.15, color="black", linestyle="--", linewidth=1, label="goal 1.15 x bound")
    ax1.set_ylabel("wall time / bound (median)")
    ax2.set_ylabel("failed items (median)")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(profiles)), profiles, rotation=15)
    ax1.legend(fontsize=8, loc="upper right")
    fig.suptitle("Full-scale run per strategy, simulated providers (medians; runs in versus.json)")
    fig.tight_layout()
    fig.savefig(PICTURE, dpi=110)


def _write(runs: dict[str, dict[str, list[dict]]], profiles: dict[str, float]) -> bool:
    """Summarise the runs so far into the JSON and the PNG; whether every goal was met."""
    from proposals.simulator import get_profile

    summary = {
        name: {s: {k: _median(per[s], k) for k in _MEDIANS} for s in STRATEGIES}
        for name, per in runs.items()
    }
    goals: dict[str, dict[str, bool | None]] = {}
    for name, per in summary.items():
        ours, fixed, fanout = per["proposals"], per["grouped50"], per["fanout"]
        over_50 = _allows_over_50(name, profiles[name], runs[name]["proposals"])
        goals[name] = {
            "ours_zero_failed_items": all(r["failed_items"] == 0 for r in runs[name]["proposals"]),
            "ours_within_1_15_bound": (ours["wall_over_bound"] or 99) <= 1.15,
            "provider_allows_over_50_in_flight": over_50,
            "ours_faster_than_grouped50": ours["wall_s"] < fixed["wall_s"] if over_50 else None,
            "ours_fewer_failed_than_fanout": ours["failed_items"] < fanout["failed_items"]
            if fanout["failed_items"]
            else None,
        }
    met = all(
        v is not False
        for g in goals.values()
        for k, v in g.items()
        if k != "provider_allows_over_50_in_flight"
    )

    result = {
        "benchmark": "versus",
        "simulated": True,
        "note": "Provider is the offline simulator (proposals.simulator), not a real LLM; "
        f"median of {RUNS} runs per strategy, each in a fresh process, strategies alternating "
        f"(rotated order) on one simulator per profile, on a shared {os.cpu_count()}-CPU "
        "machine. Bound per run from its own successful calls and tokens.",
        "strategies": {
            "fanout": "LangGraph Send per item, langchain-openai, no limit",
            "grouped50": "LangGraph Send per group of 3 items, at most 50 calls at once",
            "max_concurrency": "LangGraph Send per item, run config max_concurrency=100",
            "proposals": "this project: packed batches, adaptive gateway, no limit configured",
        },
        "profiles": {
            name: {
                "time_scale": scale,
                **get_profile(name).model_dump(
                    include={"rpm", "tpm", "max_connections", "burst_s", "ttft_s", "per_token_s"}
                ),
            }
            for name, scale in profiles.items()
            if name in runs
        },
        "timeout_s": TIMEOUT_S,
        "summary": summary,
        "goals": goals,
        "goals_met": met,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if RESULTS.exists():  # the --realtime section is written by its own invocations
        kept = json.loads(RESULTS.read_text(encoding="utf-8")).get("realtime")
        if kept is not None:
            result["realtime"] = kept
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _picture(summary)
    return met


def main() -> int:
    """Run every profile x strategy ``RUNS`` times; write the JSON and the PNG.

    Returns 0 when this project met its goals on every profile, else 1.
    """
    try:
        import langchain_openai  # noqa: F401
    except ImportError:
        print("bench.versus needs the bench extra: .venv/bin/pip install -e '.[bench]'")
        return 2
    from proposals.simulator import SimulatorProcess

    wanted = os.environ.get("VERSUS_PROFILES")
    profiles = {p: PROFILES[p] for p in wanted.split(",")} if wanted else PROFILES
    runs: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="proposals-versus-") as tmp:
        data_dir = Path(os.environ.get("VERSUS_DATA_DIR") or Path(tmp) / "data")
        if not data_dir.exists():
            _spawn(["--prepare", str(data_dir)])
        for name, scale in profiles.items():
            runs[name] = {s: [] for s in STRATEGIES}
            with SimulatorProcess(name, time_scale=scale, stall_s=STALL_S) as sim:
                for r in range(RUNS):
                    order = STRATEGIES[r % 4 :] + STRATEGIES[: r % 4]
                    for strategy in order:
                        out = Path(tmp) / f"{name}-{strategy}-{r}.json"
                        run = run_child(strategy, name, scale, sim.base_url, data_dir, out)
                        runs[name][strategy].append(run)
                        print(
                            json.dumps({k: run[k] for k in ("profile", "strategy", *_MEDIANS)}),
                            flush=True,
                        )
            met = _write(runs, profiles)  # after each profile: a cut-short run keeps its part
    return 0 if met else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--prepare", "--one"):
        _child_main(sys.argv[1:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--realtime":
        from bench._realtime import main as realtime

        raise SystemExit(realtime(sys.argv[2:]))
    else:
        raise SystemExit(main())
