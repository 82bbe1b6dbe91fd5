"""A sweep as one row per point, llama-bench style: the point's axes, then TTFT, TPOT, ITL p99, TPS, decode
TPS, MBU and the roofline's floor TPOT (medians over the point's repeats), or why the point has none. As a
terminal table, Markdown, CSV or JSON; and two sweeps compared point by point. Never imports torch."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from llmprof.analysis import registry
from llmprof.analysis.compare import Comparison, compare_runs
from llmprof.analysis.registry import ROOFLINE
from llmprof.report.summary import format_number, measured_warnings
from llmprof.runfile import Run
from llmprof.sweepfile import OK, Sweep, SweepPoint

AXIS_COLUMNS = {"batch_size": "batch", "prompt_len": "prompt", "depth": "depth", "max_new_tokens": "gen"}
METRIC_COLUMNS = [  # (column, metric of the registry)
    ("TTFT (ms)", "ttft"),
    ("TPOT (ms)", "tpot"),
    ("ITL p99 (ms)", "itl_p99"),
    ("TPS (tok/s)", "tps"),
    ("decode TPS (tok/s)", "decode_tps"),
    ("MBU", "mbu"),
    ("floor TPOT (ms)", "floor_tpot"),
]
FORMATS = ("table", "md", "csv", "json")


def columns(sweep: Sweep) -> list[str]:
    """The header: one column per axis, the status, the metrics, and the note (why a point did not run, or
    what its requests warned of)."""
    axes = [AXIS_COLUMNS.get(name, name) for name in sweep.axes]
    return [*axes, "status", *(column for column, _ in METRIC_COLUMNS), "note"]


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
        f"Sweep: {c.get('model', '?')} on {c.get('device', '?')} ({c.get('dtype', '?')}), "
        f"{done} of {len(sweep.points)} points measured{cut}; medians over {c.get('repeats', '?')} repeats"
    )


def render_table(sweep: Sweep, out: IO[str]) -> None:
    """The sweep as a rich table (plain text when not on a terminal)."""
    console = Console(file=out, width=200, highlight=False)
    table = Table(title=_title(sweep), title_justify="left")
    header = columns(sweep)
    for column in header:
        table.add_column(column, justify="left" if column in ("status", "note") else "right")
    for row in rows(sweep):
        table.add_row(*row, style=None if row[len(sweep.axes)] == OK else "yellow")
    console.print(table)


def render_markdown(sweep: Sweep, out: IO[str]) -> None:
    """The sweep as a Markdown table."""
    header = columns(sweep)
    out.write(f"#### {_title(sweep)}\n\n| " + " | ".join(header) + " |\n")
    out.write("| " + " | ".join("---" if c in ("status", "note") else "---:" for c in header) + " |\n")
    for row in rows(sweep):
        out.write("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n")


def render_csv(sweep: Sweep, out: IO[str]) -> None:
    """One CSV row per point: the axes, the status, the medians in base units (s, tok/s, ratios), the note."""
    writer = csv.writer(out, lineterminator="\n")
    names = [metric for _, metric in METRIC_COLUMNS]
    writer.writerow([*sweep.axes, "status", *names, "note"])
    for point in sweep.points:
        medians = point_medians(point)
        values = ["" if medians.get(n) is None else repr(medians[n]) for n in names]
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
    missing: str = ""  # "not measured in A", "not measured in B"


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
            missing = "not measured in A" if pa is None else "not measured in B"
            out.append(PointComparison(values, missing=missing))
        else:
            out.append(PointComparison(values, compare_runs(pa.run, pb.run)))
    return out


def _comparison_header(axes: list[str]) -> list[str]:
    cells = [AXIS_COLUMNS.get(name, name) for name in axes]
    for label, _ in COMPARED_COLUMNS:
        cells += [f"{label} B / A", f"{label} 95% CI", f"{label} verdict"]
    return cells


def _comparison_rows(points: list[PointComparison], axes: list[str]) -> list[list[str]]:
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
        rows.append(cells)
    return rows


def render_comparison(
    points: list[PointComparison], axes: list[str], names: tuple[str, str], fmt: str
) -> str:
    """Sweep B against sweep A, one row per point, as a terminal table (``table``) or Markdown (``md``)."""
    title = f"Sweep B = {names[1]} against A = {names[0]}, point by point"
    header, rows = _comparison_header(axes), _comparison_rows(points, axes)
    out = io.StringIO()
    if fmt == "md":
        out.write(f"#### {title}\n\n| " + " | ".join(header) + " |\n")
        out.write("| " + " | ".join("---" if "verdict" in c else "---:" for c in header) + " |\n")
        for row in rows:
            out.write("| " + " | ".join(row) + " |\n")
        return out.getvalue()
    table = Table(title=title, title_justify="left")
    for column in header:
        table.add_column(column, justify="left" if "verdict" in column else "right")
    for row in rows:
        verdicts = row[len(axes) + 2 :: 3]
        slower, faster = (
            any(v.endswith("slower") for v in verdicts),
            any(v.endswith("faster") for v in verdicts),
        )
        table.add_row(*row, style="red" if slower else "green" if faster else None)
    Console(file=out, width=220, highlight=False).print(table)
    return out.getvalue()
