"""Is the machine quiet enough to trust the numbers? Warnings, as pyperf gives them, when the repeats spread
widely or the process got far less CPU than a CPU run needs. Pure Python, no torch."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from llmprof.analysis.metrics import RequestMetrics
from llmprof.analysis.telemetry import RequestTelemetry

MAX_CV = 0.10  # a coefficient of variation above this across repeats is noise, not a measurement
MIN_REPEATS = 3  # below this a narrow spread says nothing (a wide one still says noise)
MIN_CPU_PERCENT = 50.0  # a CPU run whose process got less than half a core was waiting for one


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """stdev / mean, None for fewer than 2 values or a zero mean."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


def _spread_warnings(metrics: Sequence[RequestMetrics]) -> list[str]:
    """TTFT or TPOT spreading more than MAX_CV across the repeats (with how far apart, below MIN_REPEATS)."""
    out = []
    for name, values in (("TTFT", [m.ttft for m in metrics]), ("TPOT", [m.tpot for m in metrics])):
        values = [v for v in values if v is not None]
        cv = coefficient_of_variation(values)
        if cv is not None and cv > MAX_CV:
            few = len(values) < MIN_REPEATS
            spread = (
                f"; the slowest {max(values) / min(values):.1f}x the fastest" if few and min(values) else ""
            )
            out.append(
                f"noisy: {name} varies by {cv:.0%} across the {len(values)} repeats (coefficient of variation"
                f" > {MAX_CV:.0%}{spread}): another busy process, changing clocks or too few warm-ups; compare"
                " with care"
            )
    return out


ENGINE_REQUESTS = (
    "noise not judged from the requests' spread: an engine's requests differ by design (arrival, queueing, the"
    " batch each step holds)"
)


def noise_warnings(
    metrics: Sequence[RequestMetrics], telemetry: Sequence[RequestTelemetry] = (), engine: bool = False
) -> list[str]:
    """One line per sign of a noisy machine: TTFT or TPOT spreading more than MAX_CV across the repeats, or
    a CPU run whose process got less than MIN_CPU_PERCENT of a core during its requests. Below MIN_REPEATS
    repeats a wide spread is still said (with how far apart they are), and otherwise that they are too few to
    judge the noise. An ``engine``'s requests are no repeats: their spread is said not to be judged."""
    if engine:
        out = [ENGINE_REQUESTS] if metrics else []
    else:
        out = _spread_warnings(metrics)
        if metrics and len(metrics) < MIN_REPEATS and not out:
            out.append(f"{len(metrics)} repeat{'s' if len(metrics) > 1 else ''}: too few to judge the noise")
    cpu = [t.cpu_percent for t in telemetry if t.cpu_percent is not None]
    if cpu and statistics.median(cpu) < MIN_CPU_PERCENT:
        out.append(
            f"noisy: the process got {statistics.median(cpu):.0f}% of a core during its requests (median): the"
            " machine is busy, and these times are slower than it can do"
        )
    return out
