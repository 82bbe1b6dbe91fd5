"""CPU runs: the process's CPU utilization and resident memory, from the same sampler design as NVML's."""

from __future__ import annotations

import os
import resource
from typing import Any

from llmprof._core import ProcessSampler as NativeSampler
from llmprof.capture.sampling.base import Sampler, default_interval

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
    """Samples this process: CPU utilization since the previous sample (% of one core) and RSS, on a native
    thread of the extension that never takes the GIL (a Python sampler thread's wake-ups, each taking the GIL
    for its probe, slowed the demo's TPOT by 1.4-3.4% at 10 ms: benchmarks/bench_sampler.py)."""

    kind = "process"
    # On a CPU run every wake-up takes a core from torch's own threads: with the Python thread the demo TPOT
    # rose 0.9% at 50 ms, 0.3% at 200 ms; with the native one 0.45% at 10 ms (bench_sampler.py). Kept at 200 ms.
    min_interval_s = 0.2

    def __init__(self, interval_s: float | None = None, reason: str | None = None):
        super().__init__(interval_s, reason)
        self._native: NativeSampler | None = None  # the sampling thread, once started
        t_ns, cpu_ns, _ = NativeSampler(1).probe()
        self._last = (t_ns, cpu_ns)  # the first sample's CPU share counts from here

    def probe(self) -> list[dict[str, Any]]:
        return [self._row(*NativeSampler(1).probe() if self._native is None else self._native.probe())]

    def _row(self, t_ns: int, cpu_ns: int, rss: int) -> dict[str, Any]:
        """One sample's row: the CPU share since the previous sample, and the RSS."""
        last_t, last_cpu = self._last
        self._last = (t_ns, cpu_ns)
        percent = 100.0 * (cpu_ns - last_cpu) / (t_ns - last_t) if t_ns > last_t else None
        return {"device": "cpu", "cpu_percent": percent, "rss_bytes": rss if rss >= 0 else None}

    def start(self) -> None:
        """Describe the process and start the native thread, which takes a first sample (idempotent)."""
        if self._native is not None:
            return
        self.description = self.describe()
        if self.interval_s is None:
            self.interval_s = default_interval(self.measure_probe_cost(), self.min_interval_s)
        self._native = NativeSampler(max(1, round(self.interval_s * 1e9)))
        self._native.start()

    def stop(self) -> None:
        """Stop the thread after a last sample, and keep its samples (idempotent)."""
        if self._native is None:
            return
        self._native.stop()
        self._collect()
        self._native = None

    def snapshot(self) -> dict[str, Any]:
        self._collect()
        return super().snapshot()

    def _collect(self) -> None:
        """Move the native thread's samples into the columns."""
        if self._native is not None:
            for t_ns, cpu_ns, rss in self._native.take():
                self._append(t_ns, [self._row(t_ns, cpu_ns, rss)])

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
