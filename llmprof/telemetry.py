"""Telemetry of one request: the samples inside it, its counters (energy, CPU time, memory peaks) and warnings.
Pure Python, no torch or NVML: works on a saved run.

GPU utilization, power and SM clock come from the driver-buffered samples (the snapshot's ``buffered``
series, ~20 ms apart) when some of that field lie inside the request, else from the polled samples."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from llmprof.record import Label, RawRequest

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


def _window(raw: RawRequest) -> tuple[int, int]:
    start = raw.host_ns[raw.label.index(Label.REQUEST_START)]
    end = raw.host_ns[len(raw.label) - 1 - raw.label[::-1].index(Label.REQUEST_END)]
    return start, end


def _column(samples: dict[str, list[Any]], name: str, rows: list[int]) -> list[float]:
    column = samples.get(name, [])
    return [column[i] for i in rows if i < len(column) and column[i] is not None]


def _buffered(telemetry: dict[str, Any], name: str, start: int, end: int) -> list[float]:
    """The driver-buffered samples of field ``name`` (all devices) between ``start`` and ``end``."""
    buffered = telemetry.get("buffered") or {}
    return [
        value
        for t, field_name, value in zip(
            buffered.get("t_ns", []), buffered.get("field", []), buffered.get("value", [])
        )
        if field_name == name and value is not None and start <= t <= end
    ]


def request_telemetry(telemetry: dict[str, Any], raw: RawRequest) -> RequestTelemetry:
    """Summarize the run's ``telemetry`` (a sampler snapshot) over ``raw``'s duration, with its counters."""
    start, end = _window(raw)
    samples = telemetry.get("samples", {})
    rows = [i for i, t in enumerate(samples.get("t_ns", [])) if start <= t <= end]
    counters = raw.telemetry
    result = RequestTelemetry(
        samples=len(rows),
        energy_j=counters.get("energy_j"),
        energy_note=counters.get("energy_note"),
        torch_peak_allocated_bytes=counters.get("torch_peak_allocated_bytes"),
        torch_peak_reserved_bytes=counters.get("torch_peak_reserved_bytes"),
        cpu_percent=counters.get("cpu_percent"),
        peak_rss_bytes=max(_column(samples, "rss_bytes", rows) + [counters.get("peak_rss_bytes") or 0])
        or None,
    )
    if result.energy_j is not None and sum(raw.tokens_per_sequence):
        result.energy_per_token_j = result.energy_j / sum(raw.tokens_per_sequence)
    if telemetry.get("kind") != "nvml":
        return result
    chosen, sources = {}, set()
    for name in BUFFERED_FIELDS:
        values = _buffered(telemetry, name, start, end)
        source = "buffered" if values else "polled"
        chosen[name] = values or _column(samples, name, rows)
        if chosen[name]:
            sources.add(source)
    result.source = "mixed" if len(sources) > 1 else next(iter(sources), "polled")
    util, clocks, power = chosen["gpu_util"], chosen["sm_clock_mhz"], chosen["power_w"]
    memory = _column(samples, "mem_used_bytes", rows)
    result.gpu_util_mean = statistics.fmean(util) if util else None
    result.gpu_util_max = max(util, default=None)
    result.mem_used_peak_bytes = max(memory, default=None)
    result.sm_clock_mean_mhz = statistics.fmean(clocks) if clocks else None
    result.power_mean_w = statistics.fmean(power) if power else None
    reasons = 0
    for bits in _column(samples, "clock_event_reasons", rows):
        reasons |= int(bits)
    active = [name for bit, name in THROTTLE_REASONS.items() if reasons & bit]
    if active:
        result.warnings.append(f"clocks throttled during the request: {', '.join(active)}")
    if clocks and min(clocks) < CLOCK_DROP_RATIO * max(clocks):
        result.warnings.append(
            f"SM clock dropped from {max(clocks):.0f} to {min(clocks):.0f} MHz during the request"
        )
    if not rows and "buffered" not in sources:
        result.warnings.append(
            "no telemetry sample fell inside the request (shorter than the sampling interval)"
        )
    return result


def run_warnings(telemetry: dict[str, Any]) -> list[str]:
    """Warnings about the whole run: GPUs that other processes were using when profiling started."""
    out = []
    for device in telemetry.get("devices", []):
        others = device.get("other_processes_at_start") or []
        if others:
            out.append(
                f"GPU {device.get('index')} was already in use by other process(es) at start: pids {others}"
            )
    return out
