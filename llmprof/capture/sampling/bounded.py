"""What keeps a sampler's memory flat over a long run (docs/architecture.md, "Telemetry over a long run").

The rule: every probe taken while a request is open is kept, and so is every probe of the first 10 s after a
request ends (IDLE_GRACE_NS); past that, until the next request, one probe a second (IDLE_INTERVAL_NS). A
sampler that no one tells about requests keeps every probe. When the probes kept pass ``max_probes``, every
other one is dropped, over the whole run, and from then on only every other probe is kept (the stride
doubles): the resolution halves uniformly, so every request keeps its share of samples and a run's
telemetry summaries are not weighted towards its end, and memory stays under ``max_probes`` probes however
long the run. Per-request energy and CPU time come from counters read at each request's start and end, which
no dropped sample changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np

# 8 minutes of requests at 5 ms; ~32 MB of two GPUs' NVML rows (benchmarks/bench_telemetry_bound.py)
MAX_PROBES = 100_000
IDLE_GRACE_NS = 10_000_000_000
IDLE_INTERVAL_NS = 1_000_000_000
RULE = (
    "every probe inside a request and in the 10 s after one, then one a second until the next; past "
    "{max_probes} probes every other probe dropped over the whole run and the stride doubled"
)


class RequestWindows:
    """When requests were open, on the host clock: to tell a probe inside a request from one between. Its
    owner serializes :meth:`open`, :meth:`close` and :meth:`full_resolution` (the sampler's lock)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int | None] = []  # None: still open

    def open(self, t_ns: int) -> None:
        self.starts.append(t_ns)
        self.ends.append(None)

    def close(self, t_ns: int) -> None:
        if self.ends and self.ends[-1] is None:
            self.ends[-1] = t_ns

    def full_resolution(self, t_ns: int, since_ns: int) -> bool:
        """Whether a probe at ``t_ns`` is kept whole: no request was ever opened (nothing tells the sampler
        about requests), a request was open then, or one had ended (or, before the first request, the
        sampling had started, at ``since_ns``) less than IDLE_GRACE_NS before."""
        if not self.starts:
            return True
        i = bisect.bisect_right(self.starts, t_ns) - 1
        if i < 0:
            return t_ns - since_ns < IDLE_GRACE_NS
        end = self.ends[i]
        return end is None or t_ns - end < IDLE_GRACE_NS


def halve(columns: dict[str, list[Any]], ordinals: np.ndarray) -> None:
    """Keep, in place, the rows whose ``ordinals`` (their number within their series: a probe's, or a
    buffered sample's within its device and field) are even: every other one of each series."""
    keep = np.flatnonzero(ordinals % 2 == 0).tolist()
    for name, column in columns.items():
        columns[name] = [column[i] for i in keep]


def probe_ordinals(times: Sequence[int]) -> np.ndarray:
    """The probe number of each row: the rows of one probe (one per device) share its stamp."""
    stamps = np.asarray(times, dtype=np.int64)
    return np.cumsum(np.diff(stamps, prepend=stamps[:1] - 1) != 0) - 1 if len(stamps) else stamps


def series_ordinals(*keys: Sequence[Any]) -> np.ndarray:
    """Each row's number within its series, the series named by the rows' ``keys`` (device, field)."""
    seen: dict[tuple[Any, ...], int] = {}
    out = np.empty(len(keys[0]), dtype=np.int64)
    for i, key in enumerate(zip(*keys)):
        out[i] = seen[key] = seen.get(key, -1) + 1
    return out
