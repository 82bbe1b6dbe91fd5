"""The one table of metrics: what every figure of a request is called, its unit, where it is read from, and
how the reports treat it. Statistics, the summary tables, comparisons, CSV, the trace and the plot all read
this table: adding a metric is one entry here (and its computation where its source is built).

A metric is read from one of three per-request objects (its ``source``): the request's
:class:`~llmprof.analysis.metrics.RequestMetrics`, its
:class:`~llmprof.analysis.roofline.RequestRoofline`, or its :class:`~llmprof.analysis.telemetry.RequestTelemetry`.
An engine's metric (source ``engine``, the queue time) is read from the request's metrics too, but only an
engine's requests have it: it is summarized, shown and compared as a request metric, and listed apart.
Step metrics are the per-decode-step series behind them (one CSV row per step).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from llmprof.analysis.stats import Summary, percentile, summarize

REQUEST, ROOFLINE, TELEMETRY = "request", "roofline", "telemetry"  # what a metric is read from
SPECULATIVE = "speculative"  # a step metric of assisted generation, read from the request's metrics
ENGINE = "engine"  # a metric only an engine's requests have (vLLM), read from the request's metrics
# the summary table a metric is shown in
SECTION_METRICS, SECTION_BREAKDOWN = "metrics", "breakdown"
# unit -> the suffix of a CSV column that holds it
UNIT_SUFFIX = {"s": "s", "tok/s": "tok_per_s", "tok": "tok", "ratio": "ratio", "pct": "pct", "bytes": "bytes"}
# unit of a value -> (shown unit, scale): seconds are shown in ms, ratios in %
DISPLAY_UNIT = {"s": ("ms", 1e3), "ratio": ("%", 100.0), "bytes": ("MiB", 1 / 2**20), "pct": ("%", 1.0)}


@dataclass(frozen=True)
class Metric:
    """One figure of a request.

    ``get`` reads it from its ``source`` object (None when the request has no such value). ``section`` is
    the summary table that shows it (None: CSV and comparisons only); a ``headline`` metric (one of the four
    numbers) comes first in its table, and an ``optional`` one is shown only when it is ever non-zero.
    ``better`` ("lower" or "higher") makes it a compared metric. ``phase`` says which part of a request it
    measures ("request", "prefill", "decode"). A breakdown part that is a share of the request's time has a
    ``colour`` and ``total`` (its seconds in the whole request), which the plot stacks.
    """

    name: str
    label: str
    unit: str
    get: Callable[[Any], float | None]
    source: str = REQUEST
    section: str | None = SECTION_METRICS
    phase: str = "request"
    headline: bool = False
    optional: bool = False
    better: str | None = None
    short: str | None = None  # a brief name for the trace's args and the plot's legend (default: label)
    colour: str | None = None
    total: Callable[[Any], float] | None = None

    @property
    def brief(self) -> str:
        """The brief name: ``short``, else ``label``."""
        return self.short or self.label

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    @property
    def column(self) -> str:
        """Its CSV column: the name with its unit (``ttft_s``, ``tps_tok_per_s``, ``mbu_ratio``), unless the
        name already says it (``output_tokens``, ``acceptance_rate``, ``energy_j``)."""
        suffix = UNIT_SUFFIX.get(self.unit, self.unit.lower())
        says = self.name.endswith((f"_{suffix}", "tokens", "_rate", "_share", "_step", "_percent"))
        return self.name if says else f"{self.name}_{suffix}"


@dataclass(frozen=True)
class StepMetric:
    """One value per decode step k >= 2 (index ``j = k - 2``): ``get(source object, j)``, a CSV column."""

    column: str
    unit: str
    get: Callable[[Any, int], float | int | None]
    source: str = REQUEST


def _itl_percentile(q: float) -> Callable[[Any], float | None]:
    return lambda m: percentile(m.itl, q) if m.itl else None


def _steps_total(name: str) -> Callable[[Any], float]:
    """Seconds a per-step breakdown part takes over the whole request."""
    return lambda m: sum(v for v in getattr(m.breakdown, name) if v is not None)


def _part(name: str) -> Callable[[Any], float | None]:
    return lambda m: getattr(m.breakdown, name)


def _part_total(name: str) -> Callable[[Any], float]:
    return lambda m: getattr(m.breakdown, name) or 0.0


def _breakdown(name: str, label: str, phase: str, colour: str, steps: str | None = None, **kw: Any) -> Metric:
    """A time part of the breakdown: per request (``steps`` None) or the mean of a per-step series."""
    total = _steps_total(steps) if steps else _part_total(name)
    return Metric(
        name,
        label,
        "s",
        _part(name),
        section=SECTION_BREAKDOWN,
        phase=phase,
        better="lower",
        colour=colour,
        total=total,
        **kw,
    )


def _roofline(name: str, label: str, unit: str, get: Callable[[Any], float | None]) -> Metric:
    return Metric(name, label, unit, get, source=ROOFLINE, section=ROOFLINE, phase="decode")


def _telemetry(name: str, label: str, unit: str) -> Metric:
    return Metric(name, label, unit, attrgetter(name), source=TELEMETRY, section=TELEMETRY)


def _best_step(values: list[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


METRICS: tuple[Metric, ...] = (
    Metric("ttft", "TTFT", "s", attrgetter("ttft"), phase="prefill", headline=True, better="lower"),
    Metric("tpot", "TPOT", "s", attrgetter("tpot"), phase="decode", headline=True, better="lower"),
    Metric("itl_p50", "ITL p50", "s", _itl_percentile(50), phase="decode", better="lower"),
    Metric("itl_p99", "ITL p99", "s", _itl_percentile(99), phase="decode", better="lower"),
    Metric("latency", "latency (E2E)", "s", attrgetter("latency"), headline=True, better="lower", short="latency"),
    Metric("tps", "TPS (output)", "tok/s", attrgetter("tps"), headline=True, better="higher", short="TPS"),
    Metric("decode_tps", "decode TPS", "tok/s", attrgetter("decode_tps"), phase="decode", better="higher"),
    Metric("prefill_tps", "prefill throughput", "tok/s", attrgetter("prefill_tps"), phase="prefill", better="higher"),
    Metric("output_tokens", "output tokens", "tok", attrgetter("total_output_tokens"), section=None),
    Metric("acceptance_rate", "draft acceptance", "ratio", attrgetter("acceptance_rate"), phase="decode", better="higher"),
    Metric("tokens_per_step", "tokens / decode step", "tok", attrgetter("tokens_per_step"), phase="decode", better="higher"),
    Metric("queue", "queue time", "s", attrgetter("queue"), source=ENGINE, section=SECTION_BREAKDOWN,
           phase="prefill", better="lower", short="queue"),
    _breakdown("host_prep", "host prep", "prefill", "#9e9e9e"),
    _breakdown("encoder", "encoder", "prefill", "#17becf", optional=True),
    _breakdown("vision", "vision encoder", "prefill", "#8e44ad", optional=True),
    _breakdown("first_draft", "first draft", "prefill", "#bcbd22", optional=True),
    _breakdown("prefill", "prefill forward", "prefill", "#1f77b4"),
    _breakdown("first_sample", "first sample", "prefill", "#aec7e8"),
    _breakdown("decode_forward", "decode forward / step", "decode", "#2ca02c", "step_forward", short="decode forward"),
    _breakdown("draft", "draft / step", "decode", "#dbdb8d", "step_draft", short="draft"),
    _breakdown("sampling", "sampling / step", "decode", "#ffbb78", "step_sampling", short="sampling"),
    _breakdown("host_gap", "host gap / step", "decode", "#d62728", "step_host_gap", short="host gap"),
    Metric("host_bound_share", "host-bound decode steps", "ratio", _part("host_bound_share"),
           section=SECTION_BREAKDOWN, phase="decode"),
    _roofline("floor_tpot", "floor TPOT", "s", attrgetter("floor_tpot")),
    _roofline("floor_ttft", "floor TTFT", "s", attrgetter("floor_ttft")),
    _roofline("mbu", "MBU, decode (token to token)", "ratio", attrgetter("mbu")),
    _roofline("mbu_forward", "MBU, decode forwards only", "ratio", attrgetter("mbu_forward")),
    _roofline("mbu_step_max", "MBU, best decode step", "ratio", lambda a: _best_step(a.step_mbu)),
    _roofline("mfu_decode", "MFU, decode", "ratio", attrgetter("mfu_decode")),
    _roofline("mfu_prefill", "MFU, prefill forward", "ratio", attrgetter("mfu_prefill")),
    _telemetry("gpu_util_mean", "GPU utilization, mean", "pct"),
    _telemetry("gpu_util_max", "GPU utilization, max", "pct"),
    _telemetry("mem_used_peak_bytes", "GPU memory used (NVML), peak", "bytes"),
    _telemetry("torch_peak_allocated_bytes", "torch allocated, peak", "bytes"),
    _telemetry("torch_peak_reserved_bytes", "torch reserved, peak", "bytes"),
    _telemetry("sm_clock_mean_mhz", "SM clock, mean", "MHz"),
    _telemetry("power_mean_w", "power, mean", "W"),
    _telemetry("energy_j", "energy", "J"),
    _telemetry("energy_per_token_j", "energy per output token", "J"),
    _telemetry("cpu_percent", "process CPU (100% = one core)", "pct"),
    _telemetry("peak_rss_bytes", "process RSS, peak so far", "bytes"),
)  # fmt: skip
BY_NAME = {metric.name: metric for metric in METRICS}


def _host_bound(m: Any, j: int) -> int | None:
    bound = m.breakdown.step_host_bound
    return None if bound is None else int(bound[j])


STEP_METRICS: tuple[StepMetric, ...] = (
    StepMetric("itl_s", "s", lambda m, j: m.itl[j]),
    StepMetric("forward_s", "s", lambda m, j: m.breakdown.step_forward[j]),
    StepMetric("sampling_s", "s", lambda m, j: m.breakdown.step_sampling[j]),
    StepMetric("host_gap_s", "s", lambda m, j: m.breakdown.step_host_gap[j]),
    StepMetric("host_bound", "bool", _host_bound),
    StepMetric("tokens", "tok", lambda m, j: m.step_tokens[j], source=SPECULATIVE),
    StepMetric("draft_s", "s", lambda m, j: m.breakdown.step_draft[j], source=SPECULATIVE),
    StepMetric("floor_s", "s", lambda a, j: a.step_floor[j], source=ROOFLINE),
    StepMetric("mbu_ratio", "ratio", lambda a, j: a.step_mbu[j], source=ROOFLINE),
)


def metrics(source: str | None = None, section: str | None = None) -> list[Metric]:
    """The metrics read from ``source`` and/or shown in ``section``, in table order."""
    return [
        m
        for m in METRICS
        if (source is None or m.source == source) and (section is None or m.section == section)
    ]


def compared() -> list[Metric]:
    """The request metrics that comparisons judge (those with a better direction), an engine's included."""
    return [m for m in METRICS if m.source in (REQUEST, ENGINE) and m.better is not None]


def summaries(objects: Sequence[Any], source: str = REQUEST) -> dict[str, Summary]:
    """The summary over ``objects`` (one per request, of kind ``source``) of every metric of that source that
    has at least one value, in table order."""
    out = {}
    for metric in metrics(source):
        summary = summarize([metric.get(o) for o in objects])
        if summary is not None:
            out[metric.name] = summary
    return out


def medians(objects: Sequence[Any], source: str = REQUEST) -> dict[str, float]:
    """The median over ``objects`` of every metric of ``source`` that has a value, in table order: what
    :func:`summaries` gives as ``median``, without the bootstrap of the rest."""
    out = {}
    for metric in metrics(source):
        values = [float(v) for v in (metric.get(o) for o in objects) if v is not None]
        if values:
            out[metric.name] = statistics.median(values)
    return out


def display(unit: str) -> tuple[str, float]:
    """The unit a value of ``unit`` is shown in, and the scale to it."""
    return DISPLAY_UNIT.get(unit, (unit, 1.0))
