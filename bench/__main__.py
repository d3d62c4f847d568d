"""Run the benchmarks: every module ``bench/<name>.py`` (not starting with ``_``) that defines
``main()``, in name order, or only the names given on the command line."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    folder = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))


def run(names: list[str]) -> int:
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if entry is None:
            continue
        print(f"== bench.{name}", flush=True)
        started = time.perf_counter()
        try:
            code = entry()
        except Exception:
            traceback.print_exc()
            code = 1
        print(
            f"== bench.{name}: {'ok' if not code else 'FAILED'} "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    wanted = sys.argv[1:] or discover()
    unknown = set(wanted) - set(discover())
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have: {', '.join(discover())}")
        raise SystemExit(2)
    raise SystemExit(run(wanted))
