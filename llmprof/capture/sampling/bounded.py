"""What keeps a sampler's memory flat over a long run (docs/architecture.md, "Telemetry").

The rule: every probe taken while a request is open is kept, and so is every probe of the first 10 s after
a request ends (or after the sampling starts: IDLE_GRACE_NS); past that, between requests, one probe a
second (IDLE_INTERVAL_NS); and when the probes kept pass ``max_probes``, every other probe of the older half is
dropped (the oldest requests' resolution halves, the newest keep theirs), so that memory stays under
``max_probes`` probes however long the run. Per-request energy and CPU time come from counters read at each
request's start and end, which no sample dropped changes.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

MAX_PROBES = (
    100_000  # 8 minutes of requests at 5 ms; 31 MB of two GPUs' NVML rows (measured with tracemalloc)
)
IDLE_GRACE_NS = 10_000_000_000
IDLE_INTERVAL_NS = 1_000_000_000
RULE = (
    "every probe inside a request and in the 10 s after one; then one a second until the next; past "
    "{max_probes} probes every other probe of the older half dropped"
)


class RequestWindows:
    """When requests were open, on the host clock: to tell a probe inside a request from one between."""

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
        """Whether a probe at ``t_ns`` is kept whole: a request was open then, or one had ended (or the
        sampling had started, at ``since_ns``) less than IDLE_GRACE_NS before."""
        i = bisect.bisect_right(self.starts, t_ns) - 1
        if i < 0:
            return t_ns - since_ns < IDLE_GRACE_NS
        end = self.ends[i]
        return end is None or t_ns - end < IDLE_GRACE_NS


def halve_older(columns: dict[str, list[Any]], groups: np.ndarray) -> int:
    """Drop every other group of rows (``groups[i]``: the group number of row i, non-decreasing) among the
    older half of the groups, in place; returns the number of groups left."""
    count = int(groups[-1]) + 1 if len(groups) else 0
    keep = np.flatnonzero((groups >= count // 2) | (groups % 2 == 0)).tolist()
    for name, column in columns.items():
        columns[name] = [column[i] for i in keep]
    return count - (count // 2) // 2


def probe_groups(times: list[int]) -> np.ndarray:
    """The probe number of each row: the rows of one probe (one per device) share its stamp."""
    stamps = np.asarray(times, dtype=np.int64)
    return np.cumsum(np.diff(stamps, prepend=stamps[:1] - 1) != 0) - 1 if len(stamps) else stamps
