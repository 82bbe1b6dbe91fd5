"""CPU runs: the process's CPU utilization and resident memory, from the same sampler design as NVML's."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from llmprof.capture.sampling.base import Sampler

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu_time_s() -> float:
    t = os.times()
    return t.user + t.system


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux /proc), None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class ProcessSampler(Sampler):
    """Samples this process: CPU utilization since the previous sample (% of one core) and RSS."""

    kind = "process"
    # On a CPU run every wake-up of this thread takes a core from torch's own threads, which then wait for
    # each other: on the 2-core box the demo TPOT rose 0.9% at 50 ms, 0.3% at 200 ms (bench_sampler.py).
    min_interval_s = 0.2

    def __init__(self, interval_s: float | None = None, reason: str | None = None):
        super().__init__(interval_s, reason)
        self._last = (time.monotonic(), _cpu_time_s())

    def probe(self) -> list[dict[str, Any]]:
        now, cpu = time.monotonic(), _cpu_time_s()
        last_now, last_cpu = self._last
        self._last = (now, cpu)
        percent = 100.0 * (cpu - last_cpu) / (now - last_now) if now > last_now else None
        return [{"device": "cpu", "cpu_percent": percent, "rss_bytes": rss_bytes()}]

    def request_begin(self) -> dict[str, Any]:
        return {"cpu_time_s": _cpu_time_s()}

    def request_end(self, begin: dict[str, Any], duration_s: float) -> dict[str, Any]:
        cpu = _cpu_time_s() - begin["cpu_time_s"]
        return {
            "cpu_time_s": cpu,
            "cpu_percent": 100.0 * cpu / duration_s if duration_s > 0 else None,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        }

    def describe(self) -> dict[str, Any]:
        return {"devices": [{"index": "cpu", "cores": os.cpu_count()}]}
