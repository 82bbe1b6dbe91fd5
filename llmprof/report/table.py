"""Terminal tables of a run: the four metrics with their spread, the breakdown and the telemetry, as wide as
the terminal (``COLUMNS``), with the spread's columns narrowed to median, p99 and the CI below 130 columns.
What every terminal table shares: the width it renders at (:func:`width_of`) and its layouts, the widest
that fits (:func:`print_fitted`). Never imports torch."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import IO

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from llmprof.report.sections import run_sections
from llmprof.report.summary import COLUMNS, Section, run_header
from llmprof.runfile import Run

FILE_WIDTH = 140  # a table written to a file or a pipe (no terminal, no COLUMNS)
FULL_WIDTH = 130  # from this width on, every column of the spread; below, the narrow set
NARROW = ["median", "p99", "95% CI of median"]
WIDEST = 10**6  # wider than any cell


def width_of(out: IO[str] | None) -> int:
    """The width to render at: the terminal's when ``out`` is one, else ``COLUMNS`` if set, else FILE_WIDTH
    (``out`` None: a file not opened yet)."""
    if "COLUMNS" in os.environ:
        try:
            return max(int(os.environ["COLUMNS"]), 40)
        except ValueError:
            pass
    isatty = getattr(out, "isatty", None)
    if callable(isatty) and isatty():
        return shutil.get_terminal_size((FILE_WIDTH, 24)).columns
    return FILE_WIDTH


def console_for(out: IO[str], width: int | None = None) -> Console:
    """A console printing to ``out`` (with colours when it is a terminal) at ``width`` columns (default:
    :func:`width_of`)."""
    return Console(file=out, width=width or width_of(out), highlight=False)


@dataclass(frozen=True)
class Column:
    """A column of a terminal table: numbers (right-aligned, never wrapped nor cut), or ``text`` (left-aligned,
    wrapped at spaces, a word longer than the column folded onto the next line: nothing cut). ``wrap_at``: the
    width at which text meant to wrap (a note) fits; without it, a layout fits only with the text unwrapped."""

    header: str
    text: bool = False
    wrap_at: int | None = None


@dataclass
class Layout:
    """One way to lay a table out: its columns, its rows (``styles``: one per row), the caption under it (what
    short headers leave out: units) and the lines printed below it (what it moved out of the table or left
    out)."""

    columns: list[Column]
    rows: list[list[str]]
    styles: list[str | None] | None = None
    caption: str | None = None
    notes: list[str] = field(default_factory=list)

    def width(self) -> int:
        """The width it needs: each column's widest cell (at most its ``wrap_at``), the padding, the rules."""
        cells = zip(*([c.header for c in self.columns], *self.rows))
        widths = [
            min(max(map(cell_len, column)), c.wrap_at or WIDEST) for c, column in zip(self.columns, cells)
        ]
        return sum(w + 3 for w in widths) + 1

    def without(self, dropped: Sequence[int], *notes: str) -> Layout:
        """The layout less the columns at the indices ``dropped``, with ``notes`` below it."""
        keep = [i for i in range(len(self.columns)) if i not in dropped]
        return replace(
            self,
            columns=[self.columns[i] for i in keep],
            rows=[[row[i] for i in keep] for row in self.rows],
            notes=[*self.notes, *notes],
        )

    def table(self, title: str | None) -> Table:
        """The rich table of this layout."""
        table = Table(title=title, title_justify="left", caption=self.caption, caption_justify="left")
        for column in self.columns:
            justify = "left" if column.text else "right"
            table.add_column(column.header, justify=justify, no_wrap=not column.text, overflow="fold")
        for row, style in zip(self.rows, self.styles or [None] * len(self.rows)):
            table.add_row(*row, style=style)
        return table


def left_out(headers: Sequence[str], width: int) -> str:
    """The note under a table that leaves the columns ``headers`` out to fit ``width`` columns."""
    them = "it" if len(headers) == 1 else "them"
    return f"({', '.join(headers)} left out at {width} columns: a wider terminal or --format md shows {them})"


def print_fitted(console: Console, title: str | None, layouts: Sequence[Layout]) -> None:
    """Print the first of ``layouts`` (the widest first: a wide terminal keeps the full table) whose every cell
    fits the console's width on one line, else the last, its text wrapped; then that layout's notes."""
    layout = next((layout for layout in layouts if layout.width() <= console.width), layouts[-1])
    console.print(layout.table(title))
    for note in layout.notes:
        console.print(note, markup=False)


def render(run: Run, out: IO[str], width: int | None = None) -> None:
    """Print the tables of ``run`` to ``out`` (with colours when it is a terminal) at ``width`` columns
    (default: :func:`width_of`)."""
    console = console_for(out, width)
    shown = COLUMNS if console.width >= FULL_WIDTH else NARROW
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
    table.add_column(section.first, justify="left", overflow="fold")  # a long kernel name whole
    for column in section.columns or shown:
        table.add_column(column, justify="right")
    for row in section.rows:
        table.add_row(*(row if section.columns else [row[i] for i in keep]))
    return table
