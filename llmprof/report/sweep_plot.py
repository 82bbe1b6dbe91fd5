"""The figure of a sweep: latency against throughput across batch sizes, TPOT against context (with its fitted
KV-read slope), TTFT against prompt length; one curve per value of the other axes. Never imports torch."""

from __future__ import annotations

from typing import IO, Any

from llmprof.analysis.config_keys import shown
from llmprof.report.context_fit import draw_fit, fit_context_cost
from llmprof.report.figure import COLOURS, DPI, PANEL_SIZE, pyplot, save_png
from llmprof.report.sweep import AXIS_COLUMNS as AXIS_NAMES
from llmprof.report.sweep import mean_context, point_medians
from llmprof.sweepfile import Sweep


def render_sweep(sweep: Sweep, out: IO[bytes]) -> None:
    """The PNG of a sweep's curves, each where its axis has two values or more: decode throughput (all
    sequences) against per-sequence TPOT across batch sizes with the roofline's floor, TPOT against the decode
    steps' mean context (prompt length, depth or tokens generated) with its fitted KV-read slope (or why the
    fit is not a result), and TTFT against prompt length."""
    plt = pyplot()
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
    fig.suptitle(sweep_title(sweep, len(points)), fontsize=12)
    for ax, panel in zip(axes, panels):
        panel(ax, points)
    save_png(plt, fig, out)


def sweep_title(sweep: Sweep, points: int) -> str:
    """The figure's title: the sweep's model and device, its ``points`` measured and their repeats."""
    c = sweep.config
    return (
        f"llmprof sweep: {shown(c, 'model')} on {shown(c, 'device')}, {points} points, "
        f"medians over {shown(c, 'repeats')} repeats"
    )


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
        colour = COLOURS[i % len(COLOURS)]
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
        colour = COLOURS[i % len(COLOURS)]
        ax.plot([s[0] for s in shown], [s[1] for s in shown], "o-", color=colour, label=label)
        fit = fit_context_cost([(x, y) for x, y, _ in shown])
        if fit is not None:
            draw_fit(ax, fit, [shown[0][0], shown[-1][0]], colour, f"{label}: ")
        floors = [(x, f * 1e3) for x, _, f in shown if f]
        if floors:
            ax.plot(*zip(*floors), ls="-.", color=colour, alpha=0.6, label=f"{label}: roofline floor")
    _finish(ax, "mean context of the decode steps (depth + prompt + tokens generated so far)", "TPOT (ms)",
            "TPOT against context: the slope is the cost of reading the KV cache", from_zero=False)  # fmt: skip


def _prefill_panel(ax: Any, points: list[Any]) -> None:
    for i, (label, group) in enumerate(_series(points, ("prompt_len",)).items()):
        shown = sorted(  # the prompt's own tokens: a depth is context already cached, not prefilled
            (run.measured[0].prompt_tokens - run.measured[0].cached_tokens, m["ttft"] * 1e3)
            for _, m, run in group
            if m.get("ttft")
        )
        colour = COLOURS[i % len(COLOURS)]
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
