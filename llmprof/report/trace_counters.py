"""The telemetry of a trace (:mod:`llmprof.report.trace`): every sampled field as a counter track, one series
per device, in the counter's unit and rounded as the trace rounds. numpy only: never imports NVML."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llmprof.analysis.telemetry import THROTTLE_REASONS
from llmprof.report.trace_events import Counters

THROTTLE_MASK = sum(THROTTLE_REASONS)

# sampled field -> (counter name, scale to the shown unit)
COUNTERS: dict[str, tuple[str, float]] = {
    "gpu_util": ("GPU util (%)", 1.0),
    "mem_util": ("memory bandwidth util (%)", 1.0),
    "mem_used_bytes": ("memory used (GiB)", 1 / 2**30),
    "sm_clock_mhz": ("SM clock (MHz)", 1.0),
    "mem_clock_mhz": ("memory clock (MHz)", 1.0),
    "power_w": ("power (W)", 1.0),
    "temperature_c": ("temperature (C)", 1.0),
    "clock_event_reasons": ("clock throttle reasons (bitmask)", 1.0),
    "cpu_percent": ("CPU (%)", 1.0),
    "rss_bytes": ("RSS (MiB)", 1 / 2**20),
}
NOT_COUNTERS = {"t_ns", "device"}


def round_4(values: np.ndarray) -> np.ndarray:
    """``round(v, 4)`` of each value, exactly as Python rounds (the double nearest the value rounded half-even
    to 4 decimals): ``rint(v * 1e4) / 1e4`` wherever ``v * 1e4`` is clearly off a half (its rounding error
    cannot move it across), Python's own ``round`` for the few that are not."""
    scaled = values * 1e4
    off_half = np.abs(scaled - np.floor(scaled) - 0.5)
    size = np.abs(scaled)
    clear = (off_half > 1e-9 * np.maximum(size, 1.0)) & (size < 2.0**50)  # its error: under 2**-53 of it
    out = np.rint(scaled) / 1e4
    unclear = np.flatnonzero(~clear & np.isfinite(values))
    out[unclear] = [round(v, 4) for v in values[unclear].tolist()]
    return out


def _counter_column(field: str, column: list[Any], n: int) -> np.ndarray:
    """``n`` samples of a field in the counter's unit, rounded as the trace rounds (NaN for a missing,
    non-numeric or non-finite one)."""
    kept = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in column[:n]]
    kept += [math.nan] * (n - len(kept))
    if field == "clock_event_reasons":  # the idle and application-clock bits are not throttling
        kept = [float(int(v) & THROTTLE_MASK) if math.isfinite(v) else math.nan for v in kept]
    values = np.array(kept, dtype=np.float64) * COUNTERS.get(field, (field, 1.0))[1]
    finite = np.isfinite(values)
    return np.where(finite, round_4(np.where(finite, values, 0.0)), math.nan)


def counter_events(telemetry: dict[str, Any] | None, origin: int) -> Counters:
    """The telemetry's samples as counters: per sample time and field, a value per device.

    Samples taken before ``origin`` are dropped, as Perfetto rejects negative timestamps: only the sampler's
    first probe precedes the first request, and the next one follows within an interval. Of two samples of
    one device, field and time, the later one's value is kept, in the earlier one's place.
    """
    samples = (telemetry or {}).get("samples") or {}
    times = samples.get("t_ns") or []
    n = len(times)
    labels = [str(d) for d in (samples.get("device") or [])[:n]]
    labels += ["0"] * (n - len(labels))
    codes: dict[str, int] = {}
    device = np.array([codes.setdefault(label, len(codes)) for label in labels], dtype=np.int64)
    fields = [f for f in COUNTERS if f in samples] + [
        f for f in samples if f not in COUNTERS.keys() | NOT_COUNTERS
    ]
    valid = np.array([isinstance(t, int) and t >= origin for t in times], dtype=bool)
    t_ns = np.array([t if ok else 0 for t, ok in zip(times, valid.tolist())], dtype=np.int64)
    i, k, v = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for number, field in enumerate(fields):
        column = _counter_column(field, samples[field], n)
        at = np.flatnonzero(valid & ~np.isnan(column))
        i.append(at)
        k.append(np.full(len(at), number))
        v.append(column[at])
    rows, field_of, values = np.concatenate(i), np.concatenate(k), np.concatenate(v)
    t, d = t_ns[rows], device[rows]
    same = np.lexsort((rows, d, field_of, t))  # the samples of one (time, field, device) together, in order
    t, field_of, d, rows, values = t[same], field_of[same], d[same], rows[same], values[same]
    new = np.ones(len(t), dtype=bool)
    new[1:] = (t[1:] != t[:-1]) | (field_of[1:] != field_of[:-1]) | (d[1:] != d[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(t))[: len(first)] - 1
    t, field_of, d, rows, values = t[first], field_of[first], d[first], rows[first], values[last]
    order = np.lexsort((rows, field_of, t))  # by time, then field, then the samples' order
    names = [COUNTERS.get(f, (f, 1.0))[0] for f in fields]
    series = list(codes)
    return Counters(
        t[order] - origin,
        [names[j] for j in field_of[order].tolist()],
        [series[j] for j in d[order].tolist()],
        values[order],
    )
