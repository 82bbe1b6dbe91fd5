"""A sweep as one row per point, llama-bench style: the point's axes, then TTFT, TPOT, ITL p99, TPS, decode
TPS, MBU and the roofline's floor TPOT (medians over the point's repeats), or why the point has none. As a
terminal table, Markdown, CSV or JSON; and two sweeps compared point by point. Never imports torch."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from dataclasses import dataclass, field, replace
from typing import IO, Any

from llmprof.analysis import registry
from llmprof.analysis.compare import Comparison, compare_runs, setup_differences
from llmprof.analysis.config_keys import shown
from llmprof.analysis.registry import ROOFLINE
from llmprof.report.comparison import side_warnings
from llmprof.report.csv_format import cell
from llmprof.report.summary import format_number, measured_warnings
from llmprof.report.table import Column, Layout, console_for, left_out, print_fitted, width_of
from llmprof.runfile import Run
from llmprof.sweepfile import OK, Sweep, SweepPoint

AXIS_COLUMNS = {"batch_size": "batch", "prompt_len": "prompt", "depth": "depth", "max_new_tokens": "gen"}
METRIC_COLUMNS = [  # (column, metric of the registry): its header is the column and its display unit
    ("TTFT", "ttft"),
    ("TPOT", "tpot"),
    ("ITL p99", "itl_p99"),
    ("TPS", "tps"),
    ("decode TPS", "decode_tps"),
    ("MBU", "mbu"),
    ("floor TPOT", "floor_tpot"),
]
LEFT_OUT = [("decode_tps", "floor_tpot"), ("itl_p99", "mbu")]  # in turn, where a narrow table needs it
NOTE_WIDTH = 30  # the notes stay in the table where their column gets this much, else they go below it
FORMATS = ("table", "md", "csv", "json")


def _unit(metric: str) -> str | None:
    """The unit a metric's cells are in, None for a ratio (its cells say %)."""
    unit = registry.BY_NAME[metric].unit
    return None if unit == "ratio" else registry.display(unit)[0]


def columns(sweep: Sweep) -> list[str]:
    """The header: one column per axis, the status, the metrics (with their units), and the note (why a point
    did not run, or what its requests warned of)."""
    axes = [AXIS_COLUMNS.get(name, name) for name in sweep.axes]
    metrics = [
        f"{column} ({_unit(metric)})" if _unit(metric) else column for column, metric in METRIC_COLUMNS
    ]
    return [*axes, "status", *metrics, "note"]


def point_medians(point: SweepPoint) -> dict[str, float]:
    """The point's medians over its repeats, by metric name (empty for a point that did not run)."""
    if point.status != OK or point.run is None:
        return {}
    medians = registry.medians(point.run.metrics())
    if point.run.roofline is not None:
        medians.update(registry.medians(point.run.roofline_analyses(), ROOFLINE))
    return medians


def mean_context(run: Run) -> float:
    """The mean context of a run's decode steps over its repeats: the prompt + the tokens generated so far."""
    return statistics.fmean(m.prompt_tokens + (max(m.output_tokens) + 1) / 2 for m in run.metrics())


def _cell(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit = registry.BY_NAME[metric].unit
    if unit == "ratio":
        return f"{value:.1%}"
    return format_number(value * registry.display(unit)[1])


def note(point: SweepPoint) -> str:
    """Why a point did not run, or what its measured requests warned of."""
    if point.reason or point.run is None:
        return point.reason or ""
    return "; ".join(measured_warnings(point.run))


def rows(sweep: Sweep) -> list[list[str]]:
    """One row of formatted cells per point, in the grid's order (axes, then the points' own order)."""
    out = []
    for point in sweep.points:
        medians = point_medians(point)
        cells = [str(point.params[name]) for name in sweep.axes] + [point.status]
        cells += [_cell(metric, medians.get(metric)) for _, metric in METRIC_COLUMNS]
        out.append(cells + [note(point)])
    return out


def _title(sweep: Sweep) -> str:
    c = sweep.config
    done = len(sweep.measured())
    cut = " (interrupted)" if sweep.interrupted else ""
    return (
        f"Sweep: {shown(c, 'model')} on {shown(c, 'device')} ({shown(c, 'dtype')}), "
        f"{done} of {len(sweep.points)} points measured{cut}; medians over {shown(c, 'repeats')} repeats"
    )


def render_table(sweep: Sweep, out: IO[str], width: int | None = None) -> None:
    """The sweep as a rich table (plain text when not on a terminal) at ``width`` columns (default:
    :func:`~llmprof.report.table.width_of`): the widest layout that fits, of the whole table; its notes below
    it; its units in a caption; fewer metrics (LEFT_OUT)."""
    console = console_for(out, width)
    print_fitted(console, _title(sweep), _layouts(sweep, console.width))


def _layouts(sweep: Sweep, width: int) -> list[Layout]:
    """The sweep table's layouts, the widest first: whole; its notes below it; its units in a caption; less
    each group of LEFT_OUT in turn."""
    cells = rows(sweep)
    status = len(sweep.axes)
    header = columns(sweep)
    axes = _axis_columns(list(sweep.axes), [p.params for p in sweep.points])
    metrics = [Column(h) for h in header[status + 1 : -1]]
    notes = Column("note", text=True, wrap_at=NOTE_WIDTH)
    styles = [None if row[status] == OK else "yellow" for row in cells]
    full = Layout([*axes, Column("status", text=True), *metrics, notes], cells, styles)
    below = full.without(
        [len(header) - 1], *(f"{p.label}: {row[-1]}" for p, row in zip(sweep.points, cells) if row[-1])
    )
    short = [Column(h) for h, _ in METRIC_COLUMNS]
    layouts = [full, below, replace(below, columns=below.columns[: status + 1] + short, caption=_caption([]))]
    names = [metric for _, metric in METRIC_COLUMNS]
    dropped: list[str] = []
    for group in LEFT_OUT:
        dropped += group
        headers = [column for column, metric in METRIC_COLUMNS if metric in dropped]
        narrower = layouts[2].without(
            [status + 1 + names.index(m) for m in dropped], left_out(headers, width)
        )
        layouts.append(replace(narrower, caption=_caption(dropped)))
    return layouts


def _axis_columns(axes: list[str], params: list[dict[str, Any]]) -> list[Column]:
    """The axes' columns: numbers, or text where a value is not one (a kernel swap's, a missing one)."""
    return [
        Column(
            AXIS_COLUMNS.get(name, name), text=not all(isinstance(p.get(name), int | float) for p in params)
        )
        for name in axes
    ]


def _caption(dropped: list[str]) -> str:
    """The units of the metrics shown (not ``dropped``) where their headers leave them out."""
    by_unit: dict[str, list[str]] = {}
    for column, metric in METRIC_COLUMNS:
        unit = _unit(metric)
        if unit and metric not in dropped:
            by_unit.setdefault(unit, []).append(column)
    return "; ".join(f"{', '.join(shown)} in {unit}" for unit, shown in by_unit.items())


def render_markdown(sweep: Sweep, out: IO[str]) -> None:
    """The sweep as a Markdown table."""
    header = columns(sweep)
    out.write(f"#### {_title(sweep)}\n\n| " + " | ".join(header) + " |\n")
    out.write("| " + " | ".join("---" if c in ("status", "note") else "---:" for c in header) + " |\n")
    for row in rows(sweep):
        out.write("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n")


def render_csv(sweep: Sweep, out: IO[str]) -> None:
    """One CSV row per point: the axes, the status, the medians in base units (s, tok/s, ratios; written by
    :func:`~llmprof.report.csv_format.cell`), each column named as in a run's CSV (``ttft_s``,
    ``tps_tok_per_s``: the registry's), the note."""
    writer = csv.writer(out, lineterminator="\n")
    names = [metric for _, metric in METRIC_COLUMNS]
    writer.writerow([*sweep.axes, "status", *(registry.BY_NAME[n].column for n in names), "note"])
    for point in sweep.points:
        medians = point_medians(point)
        values = [cell(medians.get(n)) for n in names]
        writer.writerow([*(point.params[a] for a in sweep.axes), point.status, *values, note(point)])


def render_json(sweep: Sweep, out: IO[str]) -> None:
    """The sweep file itself, as plain JSON."""
    out.write(json.dumps(sweep.to_dict(), indent=1) + "\n")


RENDERERS = {"table": render_table, "md": render_markdown, "csv": render_csv, "json": render_json}


def render(sweep: Sweep, fmt: str) -> str:
    """``sweep`` in format ``fmt`` (one of FORMATS) as text."""
    out = io.StringIO()
    RENDERERS[fmt](sweep, out)
    return out.getvalue()


@dataclass
class PointComparison:
    """One point of sweep B against the same point of A: every metric's comparison, or why there is none."""

    params: dict[str, Any]
    comparisons: list[Comparison] = field(default_factory=list)
    missing: str = ""  # "not measured in A", "failed in B" (its reason in the notes)
    notes: list[str] = field(default_factory=list)  # the warnings of A's and B's runs of the point


COMPARED_COLUMNS = [("TTFT", "ttft"), ("TPOT", "tpot"), ("TPS", "tps")]


def compare_points(a: Sweep, b: Sweep) -> list[PointComparison]:
    """B against A point by point (the points of either, in A's order then B's new ones)."""
    ran_a = {p.key: p for p in a.measured()}
    ran_b = {p.key: p for p in b.measured()}
    params = {p.key: p.params for p in a.points + b.points}
    out = []
    for key, values in params.items():
        pa, pb = ran_a.get(key), ran_b.get(key)
        if pa is None or pa.run is None or pb is None or pb.run is None:
            missing, why = _not_measured(a, key, "A") if pa is None else _not_measured(b, key, "B")
            out.append(PointComparison(values, missing=missing, notes=why))
        else:
            out.append(
                PointComparison(values, compare_runs(pa.run, pb.run), notes=side_warnings(pa.run, pb.run))
            )
    return out


def sweep_differences(a: Sweep, b: Sweep) -> list[str]:
    """What differs between the sweeps' runs of the same points besides nothing under test (model, dtype,
    device, versions: :func:`~llmprof.analysis.compare.setup_differences`), each once; a point's own
    difference (its output tokens) names the point."""
    ran_b = {p.key: p.run for p in b.measured()}
    out: dict[str, None] = {}
    for point in a.measured():
        run_b = ran_b.get(point.key)
        if point.run is None or run_b is None:
            continue
        for difference in setup_differences(point.run, run_b):
            out[
                f"at {point.label}: {difference}" if difference.startswith("output tokens") else difference
            ] = None
    return list(out)


def _not_measured(sweep: Sweep, key: str, side: str) -> tuple[str, list[str]]:
    """Why the point ``key`` has no run in ``sweep`` (``side``: A or B): its status there ("failed in B"), or
    not measured; and its reason as a note."""
    point = next((p for p in sweep.points if p.key == key), None)
    if point is None or point.status == OK:
        return f"not measured in {side}", []
    return f"{point.status} in {side}", [f"{side}: {point.reason}"] if point.reason else []


def _comparison_header(axes: list[str]) -> list[str]:
    cells = [AXIS_COLUMNS.get(name, name) for name in axes]
    for label, _ in COMPARED_COLUMNS:
        cells += [f"{label} B / A", f"{label} 95% CI", f"{label} verdict"]
    return [*cells, "note"]


def _comparison_rows(points: list[PointComparison], axes: list[str]) -> list[list[str]]:
    """One row per point: its axes, then each compared metric's B / A, CI and verdict."""
    rows = []
    for point in points:
        cells = [str(point.params.get(name, "-")) for name in axes]
        by_metric = {c.metric: c for c in point.comparisons}
        for _, metric in COMPARED_COLUMNS:
            c = by_metric.get(metric)
            if c is None:
                cells += ["-", "-", point.missing or "-"]
            else:
                ci = "-" if math.isnan(c.ci_low) else f"{c.ci_low:.3f} - {c.ci_high:.3f}"
                cells += [f"{c.ratio:.3f}", ci, c.verdict]
        rows.append([*cells, "; ".join(point.notes)])
    return rows


def _style(verdicts: list[str]) -> str | None:
    slower, faster = (any(v.endswith(side) for v in verdicts) for side in ("slower", "faster"))
    return "red" if slower else "green" if faster else None


def _comparison_layouts(points: list[PointComparison], axes: list[str]) -> list[Layout]:
    """One row per point (the metrics side by side, its note last), the same with the notes below it, then,
    narrower, one row per point and metric (the axes on a point's first row only), the notes below."""
    wide = _comparison_rows(points, axes)
    axis_columns = _axis_columns(axes, [p.params for p in points])
    columns = axis_columns + [
        Column(h, text=h.endswith("verdict")) for h in _comparison_header(axes)[len(axes) : -1]
    ]
    long = [
        [
            *(row[: len(axes)] if i == 0 else [""] * len(axes)),
            label,
            *row[len(axes) + 3 * i : len(axes) + 3 * i + 3],
        ]
        for row in wide
        for i, (label, _) in enumerate(COMPARED_COLUMNS)
    ]
    below = [
        " ".join(f"{k}={v}" for k, v in point.params.items()) + f": {row[-1]}"
        for point, row in zip(points, wide)
        if row[-1]
    ]
    metric = [Column("metric", text=True), Column("B / A"), Column("95% CI"), Column("verdict", text=True)]
    full = Layout(
        [*columns, Column("note", text=True, wrap_at=NOTE_WIDTH)],
        wide,
        [_style(row[len(axes) + 2 : -1 : 3]) for row in wide],
    )
    return [
        full,
        full.without([len(columns)], *below),
        Layout(axis_columns + metric, long, [_style(row[-1:]) for row in long], notes=below),
    ]


def render_comparison(
    points: list[PointComparison],
    axes: list[str],
    names: tuple[str, str],
    fmt: str,
    width: int | None = None,
    warnings: list[str] | None = None,
) -> str:
    """Sweep B against sweep A, one row per point, as a terminal table (``table``, at ``width`` columns, by
    default the width of standard output: :func:`~llmprof.report.table.width_of`) or Markdown (``md``), with
    ``warnings`` (what else differs: :func:`sweep_differences`) below it."""
    title = f"Sweep B = {names[1]} against A = {names[0]}, point by point"
    out = io.StringIO()
    if fmt == "md":
        header, rows = _comparison_header(axes), _comparison_rows(points, axes)
        out.write(f"#### {title}\n\n| " + " | ".join(header) + " |\n")
        out.write(
            "| " + " | ".join("---" if c == "note" or "verdict" in c else "---:" for c in header) + " |\n"
        )
        for row in rows:
            out.write("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n")
        out.write("".join(f"\n- warning: {w}" for w in warnings or []) + ("\n" if warnings else ""))
        return out.getvalue()
    console = console_for(out, width or width_of(sys.stdout))
    print_fitted(console, title, _comparison_layouts(points, axes))
    for warning in warnings or []:
        console.print(f"warning: {warning}", markup=False)
    return out.getvalue()
