"""Terminal tables of a run: the four metrics with their spread, the breakdown and the telemetry, as wide as
the terminal (``COLUMNS``), with the spread's columns narrowed to median, p99 and the CI below 130 columns.
Never imports torch."""

from __future__ import annotations

import os
import shutil
from typing import IO

from rich.console import Console
from rich.table import Table

from llmprof.report.sections import run_sections
from llmprof.report.summary import COLUMNS, Section, run_header
from llmprof.runfile import Run

FILE_WIDTH = 140  # a table written to a file or a pipe (no terminal, no COLUMNS)
FULL_WIDTH = 130  # from this width on, every column of the spread; below, the narrow set
NARROW = ["median", "p99", "95% CI of median"]


def width_of(out: IO[str]) -> int:
    """The width to render at: the terminal's when ``out`` is one, else ``COLUMNS`` if set, else FILE_WIDTH."""
    if "COLUMNS" in os.environ:
        try:
            return max(int(os.environ["COLUMNS"]), 40)
        except ValueError:
            pass
    isatty = getattr(out, "isatty", None)
    if callable(isatty) and isatty():
        return shutil.get_terminal_size((FILE_WIDTH, 24)).columns
    return FILE_WIDTH


def render(run: Run, out: IO[str], width: int | None = None) -> None:
    """Print the tables of ``run`` to ``out`` (with colours when it is a terminal) at ``width`` columns
    (default: :func:`width_of`)."""
    width = width or width_of(out)
    console = Console(file=out, width=width, highlight=False)
    shown = COLUMNS if width >= FULL_WIDTH else NARROW
    keep = [0] + [1 + COLUMNS.index(column) for column in shown]  # the label, then the columns shown
    console.print(run_header(run))
    sections, notes = run_sections(run)
    for section in sections:
        if section.rows:
            console.print(_table(section, shown, keep))
    for note in notes:
        console.print(note, markup=False)


def _table(section: Section, shown: list[str], keep: list[int]) -> Table:
    """A section as a rich table: a summary's ``shown`` columns (cells ``keep``), or all of its own."""
    table = Table(title=section.title, title_justify="left")
    table.add_column(section.first, justify="left")
    for column in section.columns or shown:
        table.add_column(column, justify="right")
    for row in section.rows:
        table.add_row(*(row if section.columns else [row[i] for i in keep]))
    return table
