"""The sampler design shared by every backend: a daemon thread that probes at a fixed interval and appends
one row per device to columnar series, each row stamped on the timeline's host clock (CLOCK_MONOTONIC),
bounded over a long run by the rule of :mod:`llmprof.capture.sampling.bounded`."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from llmprof.capture.sampling.bounded import (
    IDLE_INTERVAL_NS,
    MAX_PROBES,
    RULE,
    RequestWindows,
    halve,
    probe_ordinals,
)

MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 0.5
DUTY_CYCLE = 0.01  # the default interval keeps the sampler's own work under 1% of one core
USER_INTERVAL_S = (
    0.001,
    3600.0,
)  # the intervals one may ask for: faster floods the run, slower samples nothing


def checked_interval(seconds: float | None) -> float | None:
    """``seconds`` if it is an interval one may sample at (None: the default); ValueError naming the bounds."""
    low, high = USER_INTERVAL_S
    if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds)):
        raise ValueError(f"a sampling interval must be a finite number of seconds, got {seconds!r}")
    if seconds is not None and not low <= seconds <= high:
        raise ValueError(f"a sampling interval must be between {low} and {high:.0f} s, got {seconds}")
    return seconds


def default_interval(probe_cost_s: float, minimum: float = MIN_INTERVAL_S) -> float:
    """The sampling interval for a probe of this measured cost: 1% duty cycle, clamped to minimum..500 ms."""
    return min(max(probe_cost_s / DUTY_CYCLE, minimum), MAX_INTERVAL_S)


class Sampler:
    """Base of the telemetry samplers. Subclasses implement :meth:`probe`, and may override the request hooks.

    ``kind`` names the backend ("nvml", "process"); ``series`` maps a field to its column, ``t_ns`` and
    ``device`` included. A probe that fails leaves None in its column, never stops the thread. ``reason`` says
    why GPU telemetry is missing, when this sampler stands in for it. The profiler brackets each request with
    :meth:`begin_request` and :meth:`end_request`: inside, every probe is kept; between, and past
    ``max_probes``, fewer (:mod:`llmprof.capture.sampling.bounded`).
    """

    kind = "none"
    min_interval_s = MIN_INTERVAL_S  # the shortest default interval

    def __init__(
        self, interval_s: float | None = None, reason: str | None = None, max_probes: int = MAX_PROBES
    ):
        self.reason = reason
        self.max_probes = max_probes
        self.windows = RequestWindows()
        self.probes = 0  # kept in ``series``
        # of the probes the idle rule passes, every stride-th is kept (it doubles past max_probes)
        self.stride = 1
        self._passed = 0  # probes the idle rule passed
        self.dropped = {"between requests": 0, "by the stride": 0, "halvings": 0}
        self._last_kept_ns: int | None = None
        self._first_ns: int | None = None  # the first probe's stamp
        self.description: dict[str, Any] = {}
        self.interval_s = checked_interval(interval_s)  # None: chosen from the measured probe cost at start()
        self.series: dict[str, list[Any]] = {}
        self.errors: dict[str, str] = {}  # field -> why it is missing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- to implement --------------------------------------------------------------------------------
    def probe(self) -> list[dict[str, Any]]:
        """One row per device: field -> value (None when unavailable)."""
        raise NotImplementedError

    def request_begin(self) -> dict[str, Any]:
        """Counters read at a request's start (energy, CPU time); handed back to :meth:`request_end`."""
        return {}

    def request_end(self, begin: dict[str, Any], duration_s: float) -> dict[str, Any]:
        """Per-request figures from the counters read at its start and end."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the report needs to know about this backend (devices, power source, ...)."""
        return {}

    def begin_request(self) -> dict[str, Any]:
        """A request starts: probes are kept at full resolution until it ends; its start counters."""
        with self._lock:
            self.windows.open(time.monotonic_ns())
        return self.request_begin()

    def end_request(self, begin: dict[str, Any], duration_s: float) -> dict[str, Any]:
        """The request that began last ends: its figures (:meth:`request_end`)."""
        with self._lock:
            self.windows.close(time.monotonic_ns())
        return self.request_end(begin, duration_s)

    # -- the thread ------------------------------------------------------------------------------------
    def measure_probe_cost(self, tries: int = 3) -> float:
        """Median wall time of one probe (its rows are discarded)."""
        costs = []
        for _ in range(tries):
            start = time.perf_counter()
            self.probe()
            costs.append(time.perf_counter() - start)
        return sorted(costs)[len(costs) // 2]

    def sample_once(self) -> None:
        """Probe now and append the rows."""
        t_ns = time.monotonic_ns()
        self._append(t_ns, self.probe())

    def _append(self, t_ns: int, rows: list[dict[str, Any]]) -> None:
        """Append one sample's rows, stamped ``t_ns``, to the columns (a new field gets a column of its own),
        unless the bounding rule drops it."""
        with self._lock:
            if self._first_ns is None:
                self._first_ns = t_ns
            if (
                self._last_kept_ns is not None
                and t_ns - self._last_kept_ns < IDLE_INTERVAL_NS
                and not self.windows.full_resolution(t_ns, self._first_ns)
            ):
                self.dropped["between requests"] += 1
                return
            self._passed += 1
            if (self._passed - 1) % self.stride:
                self.dropped["by the stride"] += 1
                return
            self._last_kept_ns = t_ns
            self.probes += bool(rows)
            for row in rows:
                row = {"t_ns": t_ns, **row}
                length = len(self.series.get("t_ns", ()))
                for key in row.keys() - self.series.keys():  # a field seen for the first time
                    self.series[key] = [None] * length
                for key, column in self.series.items():
                    column.append(row.get(key))
            if self.probes > self.max_probes:  # every other probe of the run, and from now on the stride
                halve(self.series, probe_ordinals(self.series["t_ns"]))
                self.probes = (self.probes + 1) // 2
                self.stride *= 2
                self.dropped["halvings"] += 1

    def _sample_safely(self) -> None:
        try:
            self.sample_once()
        except Exception as exc:  # noqa: BLE001 - a failing probe must not end the sampling silently
            self.errors.setdefault("probe", f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample_safely()

    def start(self) -> None:
        """Describe the devices, take a first sample and start the thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.description = self.describe()
        if self.interval_s is None:
            self.interval_s = default_interval(self.measure_probe_cost(), self.min_interval_s)
        self.sample_once()
        self._thread = threading.Thread(target=self._run, name=f"llmprof-{self.kind}-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last sample (idempotent)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample_safely()

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready telemetry of the run so far: backend, interval, description and every sample."""
        with self._lock:
            series = {key: list(column) for key, column in self.series.items()}
        return {
            "kind": self.kind,
            "reason": self.reason,
            "interval_s": self.interval_s,
            **self.description,
            "errors": dict(self.errors),
            "samples": series,
            **({"decimated": self.decimation()} if any(self.dropped.values()) else {}),
        }

    def decimation(self) -> dict[str, Any]:
        """What the bounding rule dropped, and the rule."""
        return {
            "rule": RULE.format(max_probes=self.max_probes),
            "dropped between requests": self.dropped["between requests"],
            "dropped by the stride": self.dropped["by the stride"],
            "halvings": self.dropped["halvings"],
            "stride": self.stride,
        }
