"""Memory of the running process, for the benchmarks that report it."""

from __future__ import annotations

__all__ = ["rss_mib"]


def rss_mib() -> float:
    """This process's resident set size now, in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # KiB
    except OSError:
        pass
    return 0.0
