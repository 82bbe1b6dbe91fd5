"""Terminal tables of a run: the four metrics with their spread, the breakdown and the telemetry.
Never imports torch."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.table import Table

from llmprof.report.summary import COLUMNS, run_header, summary_sections
from llmprof.runfile import Run


def render(run: Run, out: IO[str], width: int = 140) -> None:
    """Print the tables of ``run`` to ``out`` (with colours when it is a terminal)."""
    console = Console(file=out, width=width, highlight=False)
    console.print(run_header(run))
    sections, notes = summary_sections(run)
    for section in sections:
        if not section.rows:
            continue
        table = Table(title=section.title, title_justify="left")
        table.add_column(section.first, justify="left")
        for column in COLUMNS:
            table.add_column(column, justify="right")
        for row in section.rows:
            table.add_row(*row)
        console.print(table)
    for note in notes:
        console.print(note, markup=False)
