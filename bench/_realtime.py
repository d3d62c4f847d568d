"""``python -m bench.versus --realtime [profile ...]``: this project (and grouped-50) where
the client's CPU is small next to the bound.

At the main comparison's time scales (x0.015-0.05) the bound is 3-5 wall seconds while the
client alone spends 6-7 CPU seconds a run (embedding queries, 720 searches, building prompts,
parsing about a million tokens of answers) on a 2-core machine: wall / bound there measures
the machine more than the schedule. Here each profile runs where its bound is about a minute
(``REALTIME``): ``openai-tier2-mini`` in real time, the TPM-bound quotas at x0.25. The
attempt deadline scales with it (the main comparison's 10 s at x0.05: 200 simulated seconds).

Per run, besides the main comparison's figures (``bench.versus._one``), the wall is split
(``bench.versus.phases``): start (until the first lens call: retrieve, analyze, the first
country's planning, while the quota sits idle), middle (until the last lens answer) and
tail (the last syntheses); and the charged bound, tokens charged against TPM (prompt +
``max_tokens``) / TPM, the floor of a TPM-bound run for the charges it made. The load
average (1 min) is noted before and after each run.

Results: the ``realtime`` section of ``bench/results/versus.json``, one entry per profile
(the latest invocation's, so profiles can be run one at a time). ``VERSUS_RUNS`` (default
3) and ``VERSUS_REALTIME_STRATEGIES`` (default ``proposals,grouped50``; ``proposals-quota``
is this project with the profile's token quota configured) shorten it;
``VERSUS_DATA_DIR`` keeps the ingested corpus between invocations.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.versus import QUOTA_KNOWN, RESULTS, STALL_S, TIMEOUT_S, _spawn, run_child

REALTIME: dict[str, float] = {
    "openai-tier2-mini": 1.0,
    "azure-240k": 0.25,
    "openai-tier1-mini": 0.25,
}
"""Profile -> time scale: the bound is about a minute of wall time."""
_REFERENCE_SCALE = 0.05
"""The main comparison's scale at which the attempt deadline is ``TIMEOUT_S``."""


def _derived(run: dict[str, Any]) -> dict[str, Any]:
    """The figures summarised per strategy (one run)."""
    phases = run.get("phases") or {}
    return {
        "wall_s": run["wall_s"],
        "bound_s": run["bound_s"],
        "binding": run["binding"],
        "wall_over_bound": run["wall_over_bound"],
        "charged_bound_s": run["charged_bound_s"],
        "wall_over_charged_bound": round(run["wall_s"] / run["charged_bound_s"], 3)
        if run["charged_bound_s"]
        else None,
        "charged_over_used": round(run["charged_tokens"] / max(1, run["total_tokens"]), 3),
        "start_s": phases.get("start"),
        "middle_s": phases.get("middle"),
        "middle_quota_s": phases.get("middle_quota"),
        "tail_s": phases.get("tail"),
        "calls": run["calls"],
        "retries": run["retries"],
        "output_length_retries": (run.get("gateway") or {})
        .get("retries_by_cause", {})
        .get("output_length", 0),
        "failed_items": run["failed_items"],
        "client_cpu_s": run["client_cpu_s"],
        "load_average": max(run["load_average"]),
    }


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float)]
    if numbers:
        return round(statistics.median(numbers), 3)
    return values[0] if values else None


def _summary(per: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out = {}
    for strategy, runs in per.items():
        rows = [_derived(r) for r in runs]
        out[strategy] = {k: _median([row[k] for row in rows]) for k in rows[0]} if rows else {}
        out[strategy]["runs"] = len(rows)
    return out


def _earlier_runs(name: str, scale: float) -> dict[str, list[dict[str, Any]]]:
    """Runs of ``name`` at ``scale`` already in the JSON (a strategy not run this time keeps
    its earlier runs)."""
    if not RESULTS.exists():
        return {}
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    entry = data.get("realtime", {}).get("profiles", {}).get(name) or {}
    return entry.get("runs", {}) if entry.get("time_scale") == scale else {}


def _write(section: dict[str, Any]) -> None:
    data = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    realtime = data.setdefault(
        "realtime",
        {
            "note": "Simulated provider (proposals.simulator) at a time scale where the bound "
            "is about a minute of wall time, so the client's CPU (not compressed) is small "
            "next to it; medians per strategy; strategies alternate; each run in a fresh "
            f"process on a shared {os.cpu_count()}-CPU machine; load_average is the 1-minute "
            "load, the larger of before/after each run. Written by `python -m bench.versus "
            "--realtime`.",
            "profiles": {},
        },
    )
    realtime["profiles"].update(section)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(args: list[str]) -> int:
    """Run the named profiles (default: all of ``REALTIME``); 0 when this project finished
    each within 1.15 x its bound (median), else 1."""
    from proposals.simulator import SimulatorProcess

    unknown = [a for a in args if a not in REALTIME]
    if unknown:
        print(f"unknown profile(s) {', '.join(unknown)}; have: {', '.join(REALTIME)}")
        return 2
    profiles = args or list(REALTIME)
    wanted = os.environ.get("VERSUS_REALTIME_STRATEGIES", "proposals,grouped50")
    strategies = [s for s in wanted.split(",") if s]
    rounds = int(os.environ.get("VERSUS_RUNS", "3"))
    met = True
    with tempfile.TemporaryDirectory(prefix="proposals-versus-rt-") as tmp:
        data_dir = Path(os.environ.get("VERSUS_DATA_DIR") or Path(tmp) / "data")
        if not data_dir.exists():
            _spawn(["--prepare", str(data_dir)])
        for name in profiles:
            scale = REALTIME[name]
            timeout_s = TIMEOUT_S * scale / _REFERENCE_SCALE
            per: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
            with SimulatorProcess(name, time_scale=scale, stall_s=STALL_S) as sim:
                for r in range(rounds):
                    k = r % len(strategies)
                    for strategy in strategies[k:] + strategies[:k]:
                        out = Path(tmp) / f"{name}-{strategy}-{r}.json"
                        run = run_child(
                            strategy, name, scale, sim.base_url, data_dir, out, timeout_s
                        )
                        per[strategy].append(run)
                        print(
                            json.dumps({"profile": name, "strategy": strategy, **_derived(run)}),
                            flush=True,
                        )
            earlier = _earlier_runs(name, scale)
            per = {**{s: runs for s, runs in earlier.items() if s not in per}, **per}
            summary = _summary(per)
            ours = summary.get("proposals", {})
            within = (ours.get("wall_over_bound") or 99) <= 1.15
            met = met and within
            known = summary.get(QUOTA_KNOWN)
            _write(
                {
                    name: {
                        "time_scale": scale,
                        "timeout_s": timeout_s,
                        "summary": summary,
                        "ours_within_1_15_bound": within if ours else None,
                        "ours_quota_known_within_1_15_bound": (
                            (known.get("wall_over_bound") or 99) <= 1.15 if known else None
                        ),
                        "runs": per,
                    }
                }
            )
    return 0 if met else 1
