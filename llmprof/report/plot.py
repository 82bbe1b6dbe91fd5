"""Plots in one PNG (the ``plot`` format). Of a run, drawn here: per-step decode latency against context
length, the breakdown of every request, the telemetry over time, and (with ``--kernels``) each captured decode
step stacked by its top kernels (:mod:`llmprof.report.kernel_plot`). Of a comparison and of two sweeps
(:mod:`llmprof.report.comparison_plot`): every metric's ratio with its CI, and A's and B's kernels side by side.
Of a sweep (:mod:`llmprof.report.sweep_plot`): latency against throughput across batch sizes, TPOT against
context, TTFT against prompt length. Needs matplotlib (``pip install 'llmprof[plot]'``); never imports torch."""

from __future__ import annotations

import statistics
from typing import IO, Any

import numpy as np

from llmprof.analysis import registry
from llmprof.analysis.config_keys import shown
from llmprof.analysis.metrics import RequestMetrics
from llmprof.analysis.roofline import Roofline
from llmprof.report.comparison_plot import render_comparison, render_sweep_comparison
from llmprof.report.context_fit import draw_fit, fit_context_cost
from llmprof.report.figure import DPI, PANEL_SIZE, PLOT_COLUMNS, check_available, envelope, pyplot, save_png
from llmprof.report.kernel_plot import kernels_panel
from llmprof.report.sweep_plot import render_sweep
from llmprof.runfile import Run

__all__ = [
    "PLOT_COLUMNS",
    "check_available",
    "envelope",
    "fit_context_cost",
    "render",
    "render_comparison",
    "render_sweep",
    "render_sweep_comparison",
    "run_title",
]

# the breakdown parts that are shares of a request's time (the registry's, in its order), then the rest
PARTS = [
    metric for metric in registry.metrics(section=registry.SECTION_BREAKDOWN) if metric.total is not None
]
TAIL = ("tail", "after last token", "#dddddd")
REPEAT_LINES = 30  # up to this many repeats, each its own line; more, the band of their range
BARS = 60  # up to this many requests, a bar each in the breakdown; more, stacked areas
STEPS_COLOUR = "#1f77b4"  # the decode panel's steps: each repeat, their range, their median

TELEMETRY_SERIES = {  # sampler kind -> the (field, label, scale) on the left and on the right axis
    "nvml": (("gpu_util", "GPU utilization (%)", 1.0), ("power_w", "power (W)", 1.0)),
    "process": (("cpu_percent", "process CPU (%)", 1.0), ("rss_bytes", "RSS (MiB)", 1 / 2**20)),
}


def render(run: Run, out: IO[bytes]) -> None:
    """The PNG of ``run``: decode latency, breakdown, (when sampled) telemetry and (with a kernel capture)
    kernels panels."""
    plt = pyplot()
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
        kernels_panel(axes[-1], run)
    fig.suptitle(
        run_title(run, len(metrics))
        + (" (downsampled for drawing: see each panel)" if any(downsampled) else ""),
        fontsize=12,
    )
    save_png(plt, fig, out)


def run_title(run: Run, repeats: int) -> str:
    """The figure's title: the run's model, device, batch and prompt, and its ``repeats`` measured."""
    c = run.config
    return (
        f"llmprof: {shown(c, 'model')} on {shown(c, 'device')}, "
        f"batch {shown(c, 'batch_size')}, prompt {shown(c, 'prompt_tokens')} tokens, {repeats} repeats"
    )


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
    """Each step's latency against its context: the repeats, their median per step, the measured TPOT, the
    hardware's floor and the fitted cost of context; returns how the panel was downsampled (None: it was not)."""
    series = [
        (raw.prompt_tokens + np.arange(1, len(m.itl) + 1), np.asarray(m.itl, dtype=float) * 1e3)
        for raw, m in zip(run.measured, metrics)
    ]
    x = np.concatenate([c for c, _ in series]) if series else np.empty(0)
    y = np.concatenate([ms for _, ms in series]) if series else np.empty(0)
    per_context = _per_context(x, y) if len(x) else (np.empty(0),) * 4
    downsampled = _draw_steps(ax, series, per_context)
    xs, median = per_context[:2]
    _draw_floors(ax, run, metrics, envelope(xs, median)[0] if len(xs) > PLOT_COLUMNS else xs)
    fit = fit_context_cost(np.column_stack((x, y))) if len(x) else None
    if fit is not None:
        draw_fit(ax, fit, [xs[0], xs[-1]], "black")
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
        _decode_step_axis(ax, run.measured[0].prompt_tokens)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(alpha=0.3)
    return downsampled


def _draw_steps(
    ax: Any, series: list[tuple[np.ndarray, np.ndarray]], per_context: tuple[np.ndarray, ...]
) -> str | None:
    """The repeats' steps (``series``: each one's contexts and ms): a line each, or past REPEAT_LINES repeats
    or PLOT_COLUMNS contexts the band of their range; and their median per context (``per_context``: the
    contexts, and their median, smallest and largest ms), past PLOT_COLUMNS each pixel column's range of it.
    Returns how they were downsampled (None: they were not)."""
    xs, median, low, high = per_context
    if len(series) <= REPEAT_LINES and len(xs) <= PLOT_COLUMNS:
        for i, (context, ms) in enumerate(series):
            ax.plot(
                context, ms, color=STEPS_COLOUR, alpha=0.25, lw=1, label="each repeat" if i == 0 else None
            )
    elif len(xs):
        band = envelope(xs, low)[:2] + envelope(xs, high)[2:] if len(xs) > PLOT_COLUMNS else (xs, low, high)
        ax.fill_between(
            *band, color=STEPS_COLOUR, alpha=0.2, lw=0, label=f"range of the {len(series)} repeats"
        )
    if len(xs) > PLOT_COLUMNS:
        ax.fill_between(*envelope(xs, median), color=STEPS_COLOUR, lw=1, label="median per step")
        return f"{len(xs)} steps drawn as {PLOT_COLUMNS} columns (each its smallest to largest value)"
    if len(xs):
        ax.plot(xs, median, color=STEPS_COLOUR, lw=2, label="median per step")
    return None


def _draw_floors(ax: Any, run: Run, metrics: list[RequestMetrics], contexts: np.ndarray) -> None:
    """The measured TPOT (median) as a line and, with a roofline, the hardware's floor at each of
    ``contexts``."""
    tpots = [m.tpot for m in metrics if m.tpot is not None]
    if tpots:
        ax.axhline(
            statistics.median(tpots) * 1e3,
            color="#d62728",
            ls="--",
            lw=1.5,
            label=f"TPOT (median) {statistics.median(tpots) * 1e3:.3f} ms",
        )
    if run.roofline is not None and len(contexts):
        roofline = Roofline.from_dict(run.roofline)
        batch = run.measured[0].batch_size
        ax.plot(
            contexts,
            [roofline.step_floor(batch, int(v)) * 1e3 for v in contexts],
            color="#7f7f7f",
            ls="-.",
            lw=1.5,
            label=f"hardware floor ({roofline.peaks.bandwidth / 1e9:.0f} GB/s peak)",
        )
        ax.set_ylim(bottom=0)


def _decode_step_axis(ax: Any, prompt_tokens: int) -> None:
    """The decode step on a second x axis at the top (step 1: the first interval, at context ``prompt + 1``);
    both axes in whole numbers."""
    from matplotlib.ticker import MaxNLocator

    top = ax.secondary_xaxis(
        "top", functions=(lambda v: v - prompt_tokens + 1, lambda s: s + prompt_tokens - 1)
    )
    top.set_xlabel("decode step")
    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


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
