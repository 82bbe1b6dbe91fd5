"""Telemetry of one request: the samples inside it, its counters (energy, CPU time, memory peaks) and warnings.
Pure Python, no torch or NVML: works on a saved run.

GPU utilization, power and SM clock come from the driver-buffered samples (the snapshot's ``buffered``
series, ~20 ms apart) when some of that field lie inside the request, else from the polled samples."""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field
from typing import Any

from llmprof.analysis.record import RawRequest

THROTTLE_REASONS = {
    0x4: "SW power cap",
    0x8: "HW slowdown",
    0x20: "SW thermal slowdown",
    0x40: "HW thermal slowdown",
    0x80: "HW power brake",
}
CLOCK_DROP_RATIO = 0.9  # an SM clock below 90% of the request's highest counts as a drop
BUFFERED_FIELDS = ("gpu_util", "power_w", "sm_clock_mhz")  # the fields the driver-buffered samples give


@dataclass
class RequestTelemetry:
    """Telemetry of one request. GPU fields are None on a CPU run, CPU fields None on a GPU run."""

    samples: int
    gpu_util_mean: float | None = None
    gpu_util_max: float | None = None
    mem_used_peak_bytes: float | None = None
    sm_clock_mean_mhz: float | None = None
    power_mean_w: float | None = None
    energy_j: float | None = None
    energy_per_token_j: float | None = None
    energy_note: str | None = None
    torch_peak_allocated_bytes: float | None = None
    torch_peak_reserved_bytes: float | None = None
    cpu_percent: float | None = None
    peak_rss_bytes: float | None = None
    # where the GPU utilization, power and SM clock figures came from: "buffered" (the driver's high-rate
    # samples), "polled" (our probes), "mixed" (some fields each way); None without GPU telemetry
    source: str | None = None
    warnings: list[str] = field(default_factory=list)


class _Series:
    """One field's samples, sorted by time, with their device: a time window is two binary searches."""

    def __init__(self, rows: list[tuple[int, str, float]]):
        rows.sort(key=lambda row: row[0])
        self.times = [t for t, _, _ in rows]
        self.rows = rows

    def window(self, start: int, end: int) -> list[tuple[int, str, float]]:
        return self.rows[bisect.bisect_left(self.times, start) : bisect.bisect_right(self.times, end)]


def _series(times: list[Any], devices: list[Any], values: list[Any]) -> _Series:
    return _Series(
        [(t, str(d), v) for t, d, v in zip(times, devices, values) if t is not None and v is not None]
    )


def _sum_of_device_means(rows: list[tuple[int, str, float]]) -> float | None:
    """Mean per device, summed over devices: the power of a multi-GPU model (its energy is summed too)."""
    per_device: dict[str, list[float]] = {}
    for _, device, value in rows:
        per_device.setdefault(device, []).append(value)
    return sum(statistics.fmean(v) for v in per_device.values()) if per_device else None


def _clock_drop(rows: list[tuple[int, str, float]]) -> tuple[float, float] | None:
    """(highest clock so far, the clock that fell below CLOCK_DROP_RATIO of it), for the first such sample of
    any device in time order; a clock ramping up from idle is not a drop."""
    highest: dict[str, float] = {}
    for _, device, value in rows:
        top = highest.get(device, value)
        if value < CLOCK_DROP_RATIO * top:
            return top, value
        highest[device] = max(top, value)
    return None


def _throttle_reasons(reasons: list[float]) -> list[str]:
    """The names of the throttle reasons set in any of the clock-event ``reasons`` bit masks."""
    bits = 0
    for mask in reasons:
        bits |= int(mask)
    return [name for bit, name in THROTTLE_REASONS.items() if bits & bit]


class TelemetryIndex:
    """A run's telemetry (a sampler snapshot) indexed by time, to summarize each of its requests."""

    def __init__(self, telemetry: dict[str, Any]):
        self.telemetry = telemetry
        samples = telemetry.get("samples", {})
        times = samples.get("t_ns", [])
        devices = samples.get("device") or ["0"] * len(times)
        self.polled = {
            name: _series(times, devices, column)
            for name, column in samples.items()
            if name not in ("t_ns", "device")
        }
        self.sample_times = sorted(t for t in times if t is not None)
        buffered = telemetry.get("buffered") or {}
        by_field: dict[str, list[tuple[int, str, float]]] = {}
        for t, device, name, value in zip(
            buffered.get("t_ns", []),
            buffered.get("device", []),
            buffered.get("field", []),
            buffered.get("value", []),
        ):
            if t is not None and value is not None:
                by_field.setdefault(name, []).append((t, str(device), value))
        self.buffered = {name: _Series(rows) for name, rows in by_field.items()}

    def _values(self, name: str, start: int, end: int) -> list[float]:
        series = self.polled.get(name)
        return [v for _, _, v in series.window(start, end)] if series else []

    def request(self, raw: RawRequest) -> RequestTelemetry:
        """Summarize the telemetry over ``raw``'s duration, with its counters."""
        start, end = raw.window
        samples = bisect.bisect_right(self.sample_times, end) - bisect.bisect_left(self.sample_times, start)
        counters = raw.telemetry
        result = RequestTelemetry(
            samples=samples,
            energy_j=counters.get("energy_j"),
            energy_note=counters.get("energy_note"),
            torch_peak_allocated_bytes=counters.get("torch_peak_allocated_bytes"),
            torch_peak_reserved_bytes=counters.get("torch_peak_reserved_bytes"),
            cpu_percent=counters.get("cpu_percent"),
            peak_rss_bytes=max(self._values("rss_bytes", start, end) + [counters.get("peak_rss_bytes") or 0])
            or None,
        )
        if result.energy_j is not None and sum(raw.tokens_per_sequence):
            result.energy_per_token_j = result.energy_j / sum(raw.tokens_per_sequence)
        if self.telemetry.get("kind") == "nvml":
            self._summarize_gpu(result, start, end)
        return result

    def _chosen(self, start: int, end: int) -> tuple[dict[str, list[tuple[int, str, float]]], set[str]]:
        """Per field of BUFFERED_FIELDS, its driver-buffered samples in ``start..end`` where there are some,
        else its polled ones; and the sources ("buffered", "polled") of the fields that have samples."""
        chosen, sources = {}, set()
        for name in BUFFERED_FIELDS:
            buffered = self.buffered.get(name)
            rows = buffered.window(start, end) if buffered else []
            polled = self.polled.get(name)
            chosen[name] = rows or (polled.window(start, end) if polled else [])
            if chosen[name]:
                sources.add("buffered" if rows else "polled")
        return chosen, sources

    def _summarize_gpu(self, result: RequestTelemetry, start: int, end: int) -> None:
        """Fill ``result``'s GPU fields, its source and its GPU warnings from the samples in ``start..end``."""
        chosen, sources = self._chosen(start, end)
        result.source = "mixed" if len(sources) > 1 else next(iter(sources), "polled")
        util = [v for _, _, v in chosen["gpu_util"]]
        clocks = [v for _, _, v in chosen["sm_clock_mhz"]]
        memory = self._values("mem_used_bytes", start, end)
        result.gpu_util_mean = statistics.fmean(util) if util else None
        result.gpu_util_max = max(util, default=None)
        result.mem_used_peak_bytes = max(memory, default=None)
        result.sm_clock_mean_mhz = statistics.fmean(clocks) if clocks else None
        result.power_mean_w = _sum_of_device_means(chosen["power_w"])
        active = _throttle_reasons(self._values("clock_event_reasons", start, end))
        if active:
            result.warnings.append(f"clocks throttled during the request: {', '.join(active)}")
        drop = _clock_drop(chosen["sm_clock_mhz"])
        if drop is not None:
            result.warnings.append(
                f"SM clock dropped from {drop[0]:.0f} to {drop[1]:.0f} MHz during the request"
            )
        if not result.samples and "buffered" not in sources:
            result.warnings.append(
                "no telemetry sample fell inside the request (shorter than the sampling interval)"
            )


def request_telemetry(telemetry: dict[str, Any], raw: RawRequest) -> RequestTelemetry:
    """Summarize the run's ``telemetry`` (a sampler snapshot) over ``raw``'s duration, with its counters."""
    return TelemetryIndex(telemetry).request(raw)


def requests_telemetry(telemetry: dict[str, Any], raws: list[RawRequest]) -> list[RequestTelemetry]:
    """:func:`request_telemetry` of every request, indexing the telemetry once."""
    index = TelemetryIndex(telemetry)
    return [index.request(raw) for raw in raws]


def run_warnings(telemetry: dict[str, Any]) -> list[str]:
    """Notes about the whole run: GPUs that other processes were using when profiling started, and the
    samples a long run's sampler dropped to stay bounded."""
    out = []
    decimated = telemetry.get("decimated")
    if isinstance(decimated, dict):
        out.append(
            f"telemetry thinned to stay bounded ({decimated.get('rule')}): "
            f"{decimated.get('dropped between requests')} probes dropped between requests, "
            f"{decimated.get('halvings')} halvings: one probe kept in {decimated.get('stride', 1)}"
        )
    for device in telemetry.get("devices", []):
        others = device.get("other_processes_at_start") or []
        if others:
            out.append(
                f"GPU {device.get('index')} was already in use by other process(es) at start: pids {others}"
            )
    return out


def telemetry_window(telemetry: dict[str, Any], start_ns: int, end_ns: int) -> dict[str, Any]:
    """A copy of a sampler snapshot holding only the samples stamped in ``start_ns..end_ns`` (the polled
    ``samples`` and the driver-``buffered`` series alike): one sweep point's share of a sampler that ran
    through the whole sweep. The rest of the snapshot (backend, interval, devices, errors) is kept as is."""
    out = dict(telemetry)
    for block in ("samples", "buffered"):
        series = telemetry.get(block)
        if not series or "t_ns" not in series:
            continue
        keep = [i for i, t in enumerate(series["t_ns"]) if t is not None and start_ns <= t <= end_ns]
        out[block] = {name: [column[i] for i in keep] for name, column in series.items()}
    return out
