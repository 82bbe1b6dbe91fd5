"""The figures of comparisons: of runs, every metric's ratio B / A with its 95% CI and verdict, and A's and B's
kernels side by side; of sweeps, each compared metric's ratio point by point. Never imports torch."""

from __future__ import annotations

import math
from typing import IO, Any

from llmprof.analysis import registry
from llmprof.analysis.compare import Comparison
from llmprof.report.comparison import ComparisonReport
from llmprof.report.figure import DPI, PANEL_SIZE, pyplot, save_png
from llmprof.report.kernel_plot import diff_names, kernel_colours, kernel_stack
from llmprof.report.sweep import AXIS_COLUMNS as AXIS_NAMES
from llmprof.report.sweep import COMPARED_COLUMNS, PointComparison
from llmprof.runfile import Run

VERDICT_COLOURS = {"slower": "#d62728", "faster": "#2ca02c"}
RATIO_ROW = 0.32  # inches per metric in a comparison's ratio panel


def render_comparison(reports: list[ComparisonReport], runs: list[Run], out: IO[bytes]) -> None:
    """The PNG of comparisons (``runs``: A, then each report's B): per B the ratio B / A of every metric with
    its 95% CI and verdict, and, when both captured kernels, A's and B's captured decode steps side by side,
    stacked by the same operators/kernels (those that changed first) on one scale."""
    plt = pyplot()
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
        names = diff_names(diff)
        colours = kernel_colours(names)
        left = fig.add_subplot(grid[row, 0])
        right = fig.add_subplot(grid[row, 1], sharey=left)
        kernel_stack(left, runs[0].kernels, names, colours, f"A = {report.name_a}", legend=False)
        kernel_stack(right, run.kernels, names, colours, f"B = {report.name_b}")
    save_png(plt, fig, out)


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
    plt = pyplot()
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
    save_png(plt, fig, out, 0.97 if len(panels) > 3 else 0.95)
