"""Plots in one PNG. Of a run: per-step decode latency against context length, the breakdown of every request,
the telemetry over time, and (with ``--kernels``) each captured decode step stacked by its top kernels. Of a
comparison: every metric's ratio with its CI, and A's and B's kernels side by side. Of a sweep: latency against
throughput across batch sizes, TPOT against context, TTFT against prompt length; of two sweeps: each metric's
ratio with its CI, point by point. Needs matplotlib
(``pip install 'llmprof[plot]'``); never imports torch."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from llmprof.analysis import registry
from llmprof.analysis.compare import Comparison
from llmprof.analysis.kernels import KernelCapture, KernelDiff, kernel_table
from llmprof.analysis.metrics import RequestMetrics
from llmprof.analysis.roofline import Roofline
from llmprof.analysis.stats import t95
from llmprof.errors import PlotUnavailable
from llmprof.report.comparison import ComparisonReport
from llmprof.report.sweep import AXIS_COLUMNS as AXIS_NAMES
from llmprof.report.sweep import COMPARED_COLUMNS, PointComparison, mean_context, point_medians
from llmprof.runfile import Run
from llmprof.sweepfile import Sweep

DPI = 100
PANEL_SIZE = (12.0, 4.2)  # inches per panel: 1200 x 420 px
# the breakdown parts that are shares of a request's time (the registry's, in its order), then the rest
PARTS = [
    metric for metric in registry.metrics(section=registry.SECTION_BREAKDOWN) if metric.total is not None
]
TAIL = ("tail", "after last token", "#dddddd")
KERNEL_SERIES = 8  # operators/kernels stacked by name in the kernels panel; the rest as one
VERDICT_COLOURS = {"slower": "#d62728", "faster": "#2ca02c"}
RATIO_ROW = 0.32  # inches per metric in a comparison's ratio panel
PLOT_COLUMNS = 1000  # bins of a downsampled series: about one per pixel column of a panel's axes
REPEAT_LINES = 30  # up to this many repeats, each its own line; more, the band of their range
BARS = 60  # up to this many requests, a bar each in the breakdown; more, stacked areas
KERNEL_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


TELEMETRY_SERIES = {  # sampler kind -> the (field, label, scale) on the left and on the right axis
    "nvml": (("gpu_util", "GPU utilization (%)", 1.0), ("power_w", "power (W)", 1.0)),
    "process": (("cpu_percent", "process CPU (%)", 1.0), ("rss_bytes", "RSS (MiB)", 1 / 2**20)),
}


def check_available() -> None:
    """Raise PlotUnavailable now, before any work, when matplotlib is missing."""
    _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("plots need matplotlib: pip install 'llmprof[plot]'") from exc
    return plt


MIN_FIT_POINTS = 3  # distinct context lengths: through 2 any line fits exactly, and says nothing of its error


@dataclass(frozen=True)
class ContextFit:
    """A least-squares line of ms against context length: ``intercept`` (ms: reading the weights), ``per_1k``
    (ms per 1k tokens: reading the KV cache) with its 95% CI (``low``, ``high``), over ``distinct`` lengths."""

    intercept: float
    per_1k: float
    low: float
    high: float
    distinct: int

    @property
    def problem(self) -> str | None:
        """Why the fit is not a result (too few lengths; a slope whose CI holds zero or lies below it); None
        when it is one."""
        if self.distinct < MIN_FIT_POINTS:
            return f"fit over {self.distinct} points: not a result"
        ci = f"slope CI {self.low:+.3f} .. {self.high:+.3f} ms per 1k tokens"
        if self.low <= 0 <= self.high:
            return f"KV cost not resolved: {ci}"
        return f"KV cost negative ({ci}): noise, not a result" if self.high < 0 else None

    def describe(self) -> str:
        """The fit as a legend says it: its line and the slope's CI, or why it is not a result."""
        sign = "+" if self.per_1k >= 0 else "-"
        return self.problem or (
            f"fit {self.intercept:.3f} ms {sign} {abs(self.per_1k):.3f} ms per 1k tokens"
            f" (95% CI {self.low:.3f} .. {self.high:.3f})"
        )


def fit_context_cost(points: Any) -> ContextFit | None:
    """The least-squares line through (context length, ms) pairs (a sequence, or an array of two columns), with
    the 95% CI of its slope from its standard error (Student's t); None under two distinct lengths."""
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    distinct = len(np.unique(x))
    if distinct < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    spread = float(np.sum((x - x.mean()) ** 2))
    df = len(x) - 2
    if df > 0:
        residual = float(np.sum((y - (intercept + slope * x)) ** 2)) / df
        half = t95(df) * math.sqrt(residual / spread)
    else:
        half = math.inf
    per_1k = float(slope) * 1000.0
    return ContextFit(float(intercept), per_1k, per_1k - half * 1000.0, per_1k + half * 1000.0, distinct)


def envelope(x: np.ndarray, y: np.ndarray, columns: int = PLOT_COLUMNS) -> tuple[np.ndarray, ...]:
    """``(x, low, high)`` of the series ``y`` over sorted ``x`` in at most ``columns`` bins of equal width in
    x (about one pixel column each): each bin's middle x and its smallest and largest y. A plot of it costs
    the same for a million points as for a thousand, and hides no spike."""
    edges = np.linspace(x[0], x[-1], columns + 1)
    bins = np.minimum(np.searchsorted(edges, x, side="right") - 1, columns - 1)
    starts = np.flatnonzero(np.diff(bins, prepend=-1))
    ends = np.append(starts[1:], len(x)) - 1
    return (x[starts] + x[ends]) / 2, np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)


def _per_context(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct ``x`` (sorted): the median, smallest and largest ``y`` (a median as
    ``statistics.median`` has it: the middle, or the mean of the two middles)."""
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    starts = np.flatnonzero(np.diff(x, prepend=np.nan) != 0)
    counts = np.diff(np.append(starts, len(x)))
    median = (y[starts + (counts - 1) // 2] + y[starts + counts // 2]) / 2
    return x[starts], median, y[starts], y[starts + counts - 1]


def _decode_panel(ax: Any, run: Run, metrics: list[RequestMetrics]) -> str | None:
    """Each step's latency against its context; returns how the panel was downsampled (None: it was not)."""
    from matplotlib.ticker import MaxNLocator

    series = [
        (raw.prompt_tokens + np.arange(1, len(m.itl) + 1), np.asarray(m.itl, dtype=float) * 1e3)
        for raw, m in zip(run.measured, metrics)
    ]
    x = np.concatenate([c for c, _ in series]) if series else np.empty(0)
    y = np.concatenate([ms for _, ms in series]) if series else np.empty(0)
    xs, median, low, high = _per_context(x, y) if len(x) else (np.empty(0),) * 4
    downsampled = None
    if len(series) <= REPEAT_LINES and len(xs) <= PLOT_COLUMNS:
        for i, (context, ms) in enumerate(series):
            ax.plot(context, ms, color="#1f77b4", alpha=0.25, lw=1, label="each repeat" if i == 0 else None)
    elif len(xs):
        band = envelope(xs, low)[:2] + envelope(xs, high)[2:] if len(xs) > PLOT_COLUMNS else (xs, low, high)
        ax.fill_between(*band, color="#1f77b4", alpha=0.2, lw=0, label=f"range of the {len(series)} repeats")
    if len(xs) > PLOT_COLUMNS:
        downsampled = f"{len(xs)} steps drawn as {PLOT_COLUMNS} columns (each its smallest to largest value)"
        ax.fill_between(*envelope(xs, median), color="#1f77b4", lw=1, label="median per step")
    elif len(xs):
        ax.plot(xs, median, color="#1f77b4", lw=2, label="median per step")
    drawn_x = envelope(xs, median)[0] if len(xs) > PLOT_COLUMNS else xs
    tpots = [m.tpot for m in metrics if m.tpot is not None]
    if tpots:
        ax.axhline(
            statistics.median(tpots) * 1e3,
            color="#d62728",
            ls="--",
            lw=1.5,
            label=f"TPOT (median) {statistics.median(tpots) * 1e3:.3f} ms",
        )
    if run.roofline is not None and len(xs):
        roofline = Roofline.from_dict(run.roofline)
        batch = run.measured[0].batch_size
        ax.plot(
            drawn_x,
            [roofline.step_floor(batch, int(v)) * 1e3 for v in drawn_x],
            color="#7f7f7f",
            ls="-.",
            lw=1.5,
            label=f"hardware floor ({roofline.peaks.bandwidth / 1e9:.0f} GB/s peak)",
        )
        ax.set_ylim(bottom=0)
    fit = fit_context_cost(np.column_stack((x, y))) if len(x) else None
    if fit is not None:
        _fit_line(ax, fit, [xs[0], xs[-1]], "black")
    ttft = statistics.median(m.ttft for m in metrics) * 1e3
    ax.text(
        0.01,
        0.96,
        f"TTFT (median) {ttft:.2f} ms: prefill and first token, before the first interval",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
    )
    ax.set_xlabel("context length (KV cache tokens)")
    ax.set_ylabel("inter-token latency (ms)")
    ax.set_title(
        "Decode: latency of every step against context length" + (f"\n({downsampled})" if downsampled else "")
    )
    if len(x):
        top = ax.secondary_xaxis(
            "top",
            functions=(
                lambda v: v - run.measured[0].prompt_tokens + 1,
                lambda s: s + run.measured[0].prompt_tokens - 1,
            ),
        )
        top.set_xlabel("decode step")
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(alpha=0.3)
    return downsampled


def _parts_ms(m: RequestMetrics) -> dict[str, float]:
    parts = {metric.name: metric.total(m) for metric in PARTS}
    parts[TAIL[0]] = max(m.latency - sum(parts.values()), 0.0)
    return {k: v * 1e3 for k, v in parts.items()}


def _breakdown_panel(ax: Any, metrics: list[RequestMetrics]) -> str | None:
    """Each request's time stacked by part: a bar each, or for many requests stacked areas (the mean of each
    pixel column's requests past PLOT_COLUMNS); returns how it was downsampled (None: it was not)."""
    keys = [(m.name, m.brief, m.colour) for m in PARTS] + [TAIL]
    parts = np.array([[p[key] for key, _, _ in keys] for p in map(_parts_ms, metrics)]).reshape(-1, len(keys))
    positions = np.arange(1, len(metrics) + 1, dtype=float)
    downsampled = None
    if len(metrics) > PLOT_COLUMNS:
        edges = np.linspace(0, len(metrics), PLOT_COLUMNS + 1).astype(int)
        positions = (edges[:-1] + edges[1:] + 1) / 2
        parts = np.add.reduceat(parts, edges[:-1], axis=0) / np.diff(edges)[:, None]
        downsampled = f"{len(metrics)} requests drawn as {PLOT_COLUMNS} columns (the mean of each)"
    bottom = np.zeros(len(positions))
    for (key, label, colour), heights in zip(keys, parts.T):
        if heights.any():
            if len(metrics) <= BARS:
                ax.bar(positions, heights, bottom=bottom, color=colour, label=label, width=0.6)
            else:
                ax.fill_between(
                    positions, bottom, bottom + heights, color=colour, label=label, lw=0, step="mid"
                )
            bottom = bottom + heights
    if len(metrics) <= BARS:
        ax.set_xticks(positions)
    ax.set_xlabel("request (measured repeats)")
    ax.set_ylabel("time (ms)")
    ax.set_title(
        "Where the time of each request went (stacked to its end-to-end latency)"
        + (f"\n({downsampled})" if downsampled else "")
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return downsampled


def _telemetry_panel(ax: Any, run: Run) -> str | None:
    """The sampled series over time, the measured requests shaded; returns how it was downsampled."""
    telemetry = run.telemetry or {}
    samples = telemetry.get("samples", {})
    times = np.asarray(samples.get("t_ns", []), dtype=float)
    origin = run.records[0].window[0]
    left, right = TELEMETRY_SERIES[telemetry["kind"]]
    axes = [ax, ax.twinx()]
    devices = np.array([str(d) for d in samples.get("device", [])])
    downsampled = None
    for axis, (name, label, scale), colour in zip(axes, (left, right), ("#1f77b4", "#d62728")):
        values = np.array([np.nan if v is None else v for v in samples.get(name, [None] * len(times))], float)
        for device in sorted(set(devices)):
            rows = (devices == device) & ~np.isnan(values)
            x, y = (times[rows] - origin) / 1e9, values[rows] * scale
            if len(x) > PLOT_COLUMNS:
                downsampled = f"samples drawn as {PLOT_COLUMNS} columns (each its smallest to largest value)"
                axis.fill_between(*envelope(x, y), color=colour, lw=1, label=f"{label} [{device}]")
            else:
                axis.plot(x, y, color=colour, lw=1.5, marker=".", ms=3, label=f"{label} [{device}]")
        axis.set_ylabel(label, color=colour)
    spans = [((start - origin) / 1e9, (end - start) / 1e9) for start, end in (r.window for r in run.measured)]
    ax.broken_barh(spans, (0, 1), transform=ax.get_xaxis_transform(), color="#2ca02c", alpha=0.08)
    ax.set_xlabel("time since the first request (s); shaded: measured requests")
    ax.set_title(
        f"Telemetry ({telemetry.get('kind')} sampler)"
        + (f": {telemetry['reason']}" if telemetry.get("reason") else "")
        + (f"\n({downsampled})" if downsampled else "")
    )
    handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
    ax.legend(
        handles, [h.get_label() for h in handles], loc="center left", bbox_to_anchor=(1.06, 0.5), fontsize=8
    )
    ax.grid(alpha=0.3)
    return downsampled


def _kernels_panel(ax: Any, run: Run) -> None:
    """Stacked time per captured decode step by the top operators/kernels, the rest, and the uncovered part."""
    capture = run.kernels
    if capture is None:
        return
    top = [row.name for row in kernel_table(capture, "decode").rows[:KERNEL_SERIES]]
    _kernel_stack(ax, capture, top, _kernel_colours(top), "Kernels: where each captured decode step went")


def _kernel_colours(names: list[str]) -> dict[str, str]:
    return {name: KERNEL_COLOURS[i % len(KERNEL_COLOURS)] for i, name in enumerate(names)}


def _kernel_stack(
    ax: Any, capture: KernelCapture, top: list[str], colours: dict[str, str], title: str, legend: bool = True
) -> None:
    """Each captured decode step of ``capture``'s first call stacked by the names ``top``, the others as one,
    and the part no operator/kernel covers."""
    steps = capture.phase_steps("decode")
    per_step = capture.per_step("decode")
    shown = [name for name in top if name in per_step]
    series = [
        (name, [per_step[name].get((0, s), (0, 0))[1] / 1e6 for s in steps], colours[name]) for name in shown
    ]
    rest = [n for n in per_step if n not in shown]
    others = [sum(per_step[n].get((0, s), (0, 0))[1] for n in rest) / 1e6 for s in steps]
    series.append((f"{len(rest)} others", others, "#bbbbbb"))
    covered = [sum(values[i] for _, values, _ in series) for i in range(len(steps))]
    outside = "device idle" if capture.has_device else "outside operators"
    idle = [max(capture.step_time(s) / 1e6 - c, 0.0) for s, c in zip(steps, covered)]
    series.append((outside, idle, "#eeeeee"))
    bottom = [0.0] * len(steps)
    positions = list(range(len(steps)))
    for name, values, colour in series:
        ax.bar(positions, values, bottom=bottom, color=colour, label=name, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(positions, [str(s) for s in steps])
    first = f"first of {capture.calls} profiled calls" if capture.calls > 1 else "the profiled call"
    ax.set_xlabel(f"decode step ({first})")  # two panels side by side: a label either fits
    ax.set_ylabel("time per step (ms)")
    what = "device kernels" if capture.has_device else "host operators, by self time"
    ax.set_title(f"{title}\n({what})", fontsize=10)
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def render(run: Run, out: IO[bytes]) -> None:
    """The PNG of ``run``: decode latency, breakdown, (when sampled) telemetry and (with a kernel capture)
    kernels panels."""
    plt = _pyplot()
    metrics = run.metrics()
    if not metrics:
        raise ValueError("the run has no measured request to plot")
    telemetry = run.telemetry or {}
    with_telemetry = telemetry.get("kind") in TELEMETRY_SERIES and telemetry.get("samples", {}).get("t_ns")
    with_kernels = run.kernels is not None and bool(run.kernels.phase_steps("decode"))
    panels = 2 + bool(with_telemetry) + with_kernels
    fig, axes = plt.subplots(panels, 1, figsize=(PANEL_SIZE[0], PANEL_SIZE[1] * panels), dpi=DPI)
    downsampled = [_decode_panel(axes[0], run, metrics), _breakdown_panel(axes[1], metrics)]
    if with_telemetry:
        downsampled.append(_telemetry_panel(axes[2], run))
    if with_kernels:
        _kernels_panel(axes[-1], run)
    fig.suptitle(
        f"llmprof: {run.config.get('model', '?')} on {run.config.get('device', '?')}, "
        f"batch {run.config.get('batch_size', '?')}, prompt {run.config.get('prompt_tokens', '?')} tokens, "
        f"{len(metrics)} repeats"
        + (" (downsampled for drawing: see each panel)" if any(downsampled) else ""),
        fontsize=12,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))
    fig.savefig(out, format="png")
    plt.close(fig)


def render_comparison(reports: list[ComparisonReport], runs: list[Run], out: IO[bytes]) -> None:
    """The PNG of comparisons (``runs``: A, then each report's B): per B the ratio B / A of every metric with
    its 95% CI and verdict, and, when both captured kernels, A's and B's captured decode steps side by side,
    stacked by the same operators/kernels (those that changed first) on one scale."""
    plt = _pyplot()
    panels: list[tuple[str, ComparisonReport, Run]] = []
    for report, run in zip(reports, runs[1:]):
        panels.append(("ratios", report, run))
        both = [r.kernels for r in (runs[0], run)]
        if report.kernels is not None and all(k is not None and k.phase_steps("decode") for k in both):
            panels.append(("kernels", report, run))
    heights = [
        RATIO_ROW * len(r.comparisons) + 1.4 if kind == "ratios" else PANEL_SIZE[1] for kind, r, _ in panels
    ]
    fig = plt.figure(figsize=(PANEL_SIZE[0], sum(heights) + 0.5), dpi=DPI)
    grid = fig.add_gridspec(len(panels), 2, height_ratios=heights)
    fig.suptitle(f"llmprof compare: A = {reports[0].name_a}", fontsize=12)
    for row, (kind, report, run) in enumerate(panels):
        if kind == "ratios":
            _ratio_panel(fig.add_subplot(grid[row, :]), report)
            continue
        diff = report.kernels
        assert diff is not None and runs[0].kernels is not None and run.kernels is not None
        names = _diff_names(diff)
        colours = _kernel_colours(names)
        left = fig.add_subplot(grid[row, 0])
        right = fig.add_subplot(grid[row, 1], sharey=left)
        _kernel_stack(left, runs[0].kernels, names, colours, f"A = {report.name_a}", legend=False)
        _kernel_stack(right, run.kernels, names, colours, f"B = {report.name_b}")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))
    fig.savefig(out, format="png")
    plt.close(fig)


def _diff_names(diff: KernelDiff) -> list[str]:
    """The names to stack in A and B alike: those that changed (or were added/removed) first, in the diff's
    order, then the largest on either side."""
    moved = [c.name for c in diff.changes if diff.verdict(c) in ("changed", "added", "removed")]
    largest = [c.name for c in sorted(diff.changes, key=lambda c: -max(c.a_ns, c.b_ns))]
    names = list(dict.fromkeys(moved + largest))
    return names[:KERNEL_SERIES]


def _ratio_panel(ax: Any, report: ComparisonReport) -> None:
    """Each metric of a comparison: its B / A with its 95% CI, against the line of no change."""
    rows = []
    for c in report.comparisons:
        metric = registry.BY_NAME.get(c.metric)
        rows.append((metric.label if metric else c.metric, c, ""))
    counts = next((f" ({c.n_a} vs {c.n_b} repeats)" for _, c, _ in rows if not math.isnan(c.ratio)), "")
    _ratios(ax, rows, f"B = {report.name_b} against A = {report.name_a}{counts}")


def _ratios(ax: Any, rows: list[tuple[str, Comparison | None, str]], title: str) -> None:
    """One row per (label, comparison, why there is none): B / A with its 95% CI, coloured by verdict, and its
    figures as the right axis' labels; a row without a ratio is named, greyed, with its reason."""
    positions = list(range(len(rows)))[::-1]
    colours, notes = [], []
    for y, (_, c, why) in zip(positions, rows):
        if c is None or math.isnan(c.ratio):
            colours.append("#7f7f7f")
            notes.append(why or "no value")
            continue
        colour = next((v for k, v in VERDICT_COLOURS.items() if c.verdict.endswith(k)), "#7f7f7f")
        low, high = (c.ratio, c.ratio) if math.isnan(c.ci_low) else (c.ci_low, c.ci_high)
        ax.errorbar(c.ratio, y, xerr=[[c.ratio - low], [high - c.ratio]], fmt="o", color=colour, capsize=4)
        colours.append(colour)
        notes.append(f"{c.ratio:.3f} ({low:.3f}-{high:.3f}) {c.verdict}")
    ax.set_yticks(positions, [label for label, _, _ in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    verdicts = ax.twinx()  # each row's figures as the right axis' labels: inside the figure's layout
    verdicts.set_ylim(ax.get_ylim())
    verdicts.set_yticks(positions, notes, fontsize=8)
    for label, colour in zip(verdicts.get_yticklabels(), colours):
        label.set_color(colour)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("B / A (ratio of medians; bars: 95% bootstrap CI)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)


def render_sweep_comparison(
    comparisons: list[tuple[str, str, list[PointComparison]]], out: IO[bytes]
) -> None:
    """The PNG of sweep comparisons (``(name A, name B, points)`` each): per B and per compared metric (TTFT,
    TPOT, TPS), every point's B / A with its 95% CI and verdict, and the points measured on one side only."""
    plt = _pyplot()
    panels = [(a, b, points, m) for a, b, points in comparisons for m in COMPARED_COLUMNS]
    heights = [RATIO_ROW * len(points) + 1.4 for _, _, points, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(PANEL_SIZE[0], sum(heights) + 0.5), dpi=DPI, height_ratios=heights
    )
    fig.suptitle(f"llmprof compare of sweeps: A = {comparisons[0][0]}, point by point", fontsize=12)
    for ax, (name_a, name_b, points, (label, metric)) in zip(list(getattr(axes, "flat", [axes])), panels):
        rows = []
        for point in points:
            by_metric = {c.metric: c for c in point.comparisons}
            name = ", ".join(f"{AXIS_NAMES.get(k, k)} {v}" for k, v in point.params.items())
            rows.append((name, by_metric.get(metric), point.missing))
        _ratios(ax, rows, f"{label}: B = {name_b} against A = {name_a}")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97 if len(panels) > 3 else 0.95))
    fig.savefig(out, format="png")
    plt.close(fig)


def render_sweep(sweep: Sweep, out: IO[bytes]) -> None:
    """The PNG of a sweep's curves, each where its axis has two values or more: decode throughput (all
    sequences) against per-sequence TPOT across batch sizes with the roofline's floor, TPOT against the decode
    steps' mean context (prompt length, depth or tokens generated) with its fitted KV-read slope (or why the
    fit is not a result), and TTFT against prompt length."""
    plt = _pyplot()
    points = [(p.params, point_medians(p), p.run) for p in sweep.measured() if p.run is not None]
    if not points:
        raise ValueError("the sweep has no measured point to plot")
    varies = {name: len({params.get(name) for params, _, _ in points}) > 1 for name in sweep.axes}
    panels = [
        panel
        for panel, shown in (
            (_throughput_panel, varies.get("batch_size")),
            (_context_panel, varies.get("prompt_len") or varies.get("depth") or varies.get("max_new_tokens")),
            (_prefill_panel, varies.get("prompt_len")),
        )
        if shown
    ] or [_throughput_panel]
    fig, axes = plt.subplots(len(panels), 1, figsize=(PANEL_SIZE[0], PANEL_SIZE[1] * len(panels)), dpi=DPI)
    axes = axes if len(panels) > 1 else [axes]
    c = sweep.config
    fig.suptitle(
        f"llmprof sweep: {c.get('model', '?')} on {c.get('device', '?')}, {len(points)} points, "
        f"medians over {c.get('repeats', '?')} repeats",
        fontsize=12,
    )
    for ax, panel in zip(axes, panels):
        panel(ax, points)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))
    fig.savefig(out, format="png")
    plt.close(fig)


def _series(points: list[Any], along: tuple[str, ...]) -> dict[str, list[Any]]:
    """The points grouped into one curve per value of every axis but those ``along`` the curve (a label per
    curve, e.g. "prompt 128, depth 0, gen 64"), each in grid order."""
    groups: dict[str, list[Any]] = {}
    for point in points:
        params = point[0]
        fixed = [k for k in params if k not in along]
        label = ", ".join(f"{AXIS_NAMES.get(k, k)} {params[k]}" for k in fixed) or "all points"
        groups.setdefault(label, []).append(point)
    return groups


def _throughput_panel(ax: Any, points: list[Any]) -> None:
    for i, (label, group) in enumerate(_series(points, ("batch_size",)).items()):
        shown = sorted(
            ((m["tpot"] * 1e3, m["decode_tps"], p["batch_size"], m.get("floor_tpot")) for p, m, _ in group
             if m.get("tpot") and m.get("decode_tps")),
            key=lambda s: s[2],
        )  # fmt: skip
        if not shown:
            continue
        colour = KERNEL_COLOURS[i % len(KERNEL_COLOURS)]
        ax.plot([s[0] for s in shown], [s[1] for s in shown], "o-", color=colour, label=label)
        for x, y, batch, _ in shown:
            ax.annotate(f"b{batch}", (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
        floors = [(f * 1e3, b / f) for _, _, b, f in shown if f]
        if floors:
            ax.plot(*zip(*floors), ls="-.", color=colour, alpha=0.6, label=f"{label}: roofline floor")
    _finish(ax, "TPOT per sequence (ms)", "decode throughput, all sequences (tok/s)",
            "Latency against throughput across batch sizes (bN: batch N)")  # fmt: skip


def _context_panel(ax: Any, points: list[Any]) -> None:
    for i, (label, group) in enumerate(_series(points, ("prompt_len", "depth", "max_new_tokens")).items()):
        shown = sorted(
            (mean_context(run), m["tpot"] * 1e3, m.get("floor_tpot")) for _, m, run in group if m.get("tpot")
        )
        if not shown:
            continue
        colour = KERNEL_COLOURS[i % len(KERNEL_COLOURS)]
        ax.plot([s[0] for s in shown], [s[1] for s in shown], "o-", color=colour, label=label)
        fit = fit_context_cost([(x, y) for x, y, _ in shown])
        if fit is not None:
            _fit_line(ax, fit, [shown[0][0], shown[-1][0]], colour, f"{label}: ")
        floors = [(x, f * 1e3) for x, _, f in shown if f]
        if floors:
            ax.plot(*zip(*floors), ls="-.", color=colour, alpha=0.6, label=f"{label}: roofline floor")
    _finish(ax, "mean context of the decode steps (depth + prompt + tokens generated so far)", "TPOT (ms)",
            "TPOT against context: the slope is the cost of reading the KV cache", from_zero=False)  # fmt: skip


def _fit_line(ax: Any, fit: ContextFit, ends: list[float], colour: str, prefix: str = "") -> None:
    """A fit in a panel: its dotted line over ``ends`` (x) with its figures in the legend, or, when it is not a
    result, only a legend entry saying so (no line)."""
    if fit.problem is not None:
        ax.plot([], [], ls="none", label=f"{prefix}{fit.problem}")
        return
    line = [fit.intercept + fit.per_1k * x / 1e3 for x in ends]
    ax.plot(ends, line, ":", color=colour, lw=1.5, label=f"{prefix}{fit.describe()}")


def _prefill_panel(ax: Any, points: list[Any]) -> None:
    for i, (label, group) in enumerate(_series(points, ("prompt_len",)).items()):
        shown = sorted(  # the prompt's own tokens: a depth is context already cached, not prefilled
            (run.measured[0].prompt_tokens - run.measured[0].cached_tokens, m["ttft"] * 1e3)
            for _, m, run in group
            if m.get("ttft")
        )
        colour = KERNEL_COLOURS[i % len(KERNEL_COLOURS)]
        ax.plot([s[0] for s in shown], [s[1] for s in shown], "o-", color=colour, label=label)
    _finish(ax, "prompt length (tokens prefilled)", "TTFT (ms)", "TTFT against prompt length")


def _finish(ax: Any, xlabel: str, ylabel: str, title: str, from_zero: bool = True) -> None:
    """A sweep panel's labels, title, legend (outside, on the right) and grid; its axes from zero."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if from_zero:
        ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(alpha=0.3)
