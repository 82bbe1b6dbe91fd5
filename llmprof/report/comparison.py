"""A comparison of runs as a terminal table or Markdown: per metric the medians, the ratio with its 95% CI
and the verdict, then the setup differences that may confound it. Never imports torch."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from llmprof.analysis import registry
from llmprof.analysis.compare import Comparison
from llmprof.analysis.kernels import KernelDiff
from llmprof.report.kernels import diff_section
from llmprof.report.summary import Section, format_number

COLUMNS = ["metric", "A median", "B median", "B / A", "95% CI of B / A", "verdict"]


@dataclass
class ComparisonReport:
    """B against A: every metric's comparison, and warnings about what else differs."""

    name_a: str
    name_b: str
    comparisons: list[Comparison]
    warnings: list[str] = field(default_factory=list)
    kernels: KernelDiff | None = None  # when both runs captured kernels


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


def render_comparison_table(reports: list[ComparisonReport], width: int = 140) -> str:
    """The comparisons as rich tables (plain text when not on a terminal)."""
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False)
    for report in reports:
        table = Table(title=_title(report), title_justify="left")
        for i, column in enumerate(COLUMNS):
            table.add_column(column, justify="left" if i in (0, 5) else "right")
        for row in _rows(report):
            style = "green" if row[-1].endswith("faster") else "red" if row[-1].endswith("slower") else None
            table.add_row(*row, style=style)
        console.print(table)
        for warning in report.warnings:
            console.print(f"warning: {warning}", markup=False)
        if report.kernels is not None:
            section, notes = diff_section(report.kernels, report.name_a, report.name_b)
            console.print(_kernel_table(section))
            for note in notes:
                console.print(note, markup=False)
    return out.getvalue()


def _kernel_table(section: Section) -> Table:
    table = Table(title=section.title, title_justify="left")
    for i, column in enumerate([section.first, *(section.columns or [])]):
        table.add_column(column, justify="left" if i in (0, 5) else "right")
    for row in section.rows:
        style = (
            "red"
            if row[-1] == "changed" and row[3].startswith("+")
            else "green"
            if row[-1] == "changed"
            else None
        )
        table.add_row(*row, style=style)
    return table


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
