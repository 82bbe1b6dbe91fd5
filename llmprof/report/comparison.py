"""A comparison of runs as a terminal table or Markdown: per metric the medians, the ratio with its 95% CI
and the verdict, then the setup differences that may confound it. Never imports torch."""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field, replace

from llmprof.analysis import registry
from llmprof.analysis.compare import Comparison
from llmprof.analysis.kernels import KernelDiff
from llmprof.report.kernels import DIFF_CAPTION, DIFF_CI, DIFF_COLUMNS, DIFF_SHORT, diff_section
from llmprof.report.summary import Section, format_number, measured_warnings
from llmprof.report.table import Column, Layout, console_for, left_out, print_fitted, width_of
from llmprof.runfile import Run

COLUMNS = ["metric", "A median", "B median", "B / A", "95% CI of B / A", "verdict"]
SHORT = ["metric", "A", "B", "B / A", "95% CI", "verdict"]  # where COLUMNS do not fit, with SHORT_CAPTION
SHORT_CAPTION = "A, B: the medians; 95% CI: of B / A"


@dataclass
class ComparisonReport:
    """B against A: every metric's comparison, and warnings about what else differs."""

    name_a: str
    name_b: str
    comparisons: list[Comparison]
    warnings: list[str] = field(default_factory=list)
    kernels: KernelDiff | None = None  # when both runs captured kernels


def side_warnings(a: Run, b: Run) -> list[str]:
    """The warnings of runs A and B (:func:`~llmprof.report.summary.measured_warnings`), each with its side:
    "A: noisy: ...", "B: torch.compile compiled ..."."""
    return [
        f"{side}: {w.removeprefix('warning: ')}"
        for side, run in (("A", a), ("B", b))
        for w in measured_warnings(run)
    ]


def with_run_warnings(report: ComparisonReport, a: Run, b: Run) -> ComparisonReport:
    """``report`` with the warnings of its runs A and B (:func:`side_warnings`) below what else differs."""
    return replace(report, warnings=[*report.warnings, *side_warnings(a, b)])


def _rows(report: ComparisonReport) -> list[list[str]]:
    rows = []
    for c in report.comparisons:
        shown, scale = registry.display(c.unit)
        metric = registry.BY_NAME.get(c.metric)
        rows.append(
            [
                f"{metric.label if metric else c.metric} ({shown})",
                format_number(c.median_a * scale),
                format_number(c.median_b * scale),
                f"{c.ratio:.3f}",
                "-" if math.isnan(c.ci_low) else f"{c.ci_low:.3f} - {c.ci_high:.3f}",
                c.verdict,
            ]
        )
    return rows


def _title(report: ComparisonReport) -> str:
    n = report.comparisons[0] if report.comparisons else None
    counts = f" ({n.n_a} vs {n.n_b} repeats)" if n else ""
    return f"B = {report.name_b} against A = {report.name_a}{counts}"


def render_comparison_table(reports: list[ComparisonReport], width: int | None = None) -> str:
    """The comparisons as rich tables (plain text when not on a terminal) at ``width`` columns (default: the
    width of standard output, :func:`~llmprof.report.table.width_of`)."""
    out = io.StringIO()
    console = console_for(out, width or width_of(sys.stdout))
    for report in reports:
        rows = _rows(report)
        styles = [_style(row[-1].endswith("faster"), row[-1].endswith("slower")) for row in rows]
        print_fitted(console, _title(report), _narrowed(COLUMNS, SHORT, SHORT_CAPTION, rows, styles))
        for warning in report.warnings:
            console.print(f"warning: {warning}", markup=False)
        if report.kernels is not None:
            section, notes = diff_section(report.kernels, report.name_a, report.name_b)
            print_fitted(console, section.title, _kernel_layouts(section, console.width))
            for note in notes:
                console.print(note, markup=False)
    return out.getvalue()


def _style(better: bool, worse: bool) -> str | None:
    return "green" if better else "red" if worse else None


def _narrowed(
    full: list[str], short: list[str], caption: str, rows: list[list[str]], styles: list[str | None]
) -> list[Layout]:
    """A comparison's layouts: its ``full`` headers, then the ``short`` ones with ``caption`` saying the rest;
    the first column (what is compared) and the last (the verdict) are text, the others numbers."""
    layout = Layout([Column(h, text=i in (0, len(full) - 1)) for i, h in enumerate(full)], rows, styles)
    columns = [replace(column, header=h) for column, h in zip(layout.columns, short)]
    return [layout, replace(layout, columns=columns, caption=caption)]


def _kernel_layouts(section: Section, width: int) -> list[Layout]:
    """The kernel diff's layouts: its full headers, the short ones, then without the CI of the change (which
    the verdict sums up)."""
    headers = [section.first, *(section.columns or [])]
    styles = [
        _style(row[-1] == "changed" and not row[3].startswith("+"), row[-1] == "changed")
        for row in section.rows
    ]
    full, short = _narrowed(headers, [section.first, *DIFF_SHORT], DIFF_CAPTION, section.rows, styles)
    return [full, short, short.without([1 + DIFF_COLUMNS.index(DIFF_CI)], left_out([DIFF_CI], width))]


def render_comparison_markdown(reports: list[ComparisonReport]) -> str:
    """The comparisons as Markdown tables, ready for a pull request."""
    lines = []
    for report in reports:
        lines += [
            f"#### {_title(report)}",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
        lines += [""] + [f"- warning: {w}" for w in report.warnings] + ([""] if report.warnings else [])
        if report.kernels is not None:
            section, notes = diff_section(report.kernels, report.name_a, report.name_b)
            lines += [
                f"#### {section.title}",
                "",
                "| " + " | ".join([section.first, *(section.columns or [])]) + " |",
            ]
            lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in section.rows]
            lines += [""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines).rstrip() + "\n"
