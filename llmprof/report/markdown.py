"""The run summary as Markdown, ready to paste into an issue or a pull request. Never imports torch."""

from __future__ import annotations

from typing import IO

from llmprof.report.sections import run_sections
from llmprof.report.summary import COLUMNS, run_header
from llmprof.runfile import Run


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def render(run: Run, out: IO[str]) -> None:
    """Header line, one table per section, then the notes as a list."""
    lines = [f"**llmprof** · {_escape(run_header(run))}", ""]
    sections, notes = run_sections(run)
    for section in sections:
        if not section.rows:
            continue
        columns = section.columns or COLUMNS
        header = [section.first, *columns]
        lines += [f"#### {section.title}", "", "| " + " | ".join(header) + " |"]
        lines.append("| --- |" + " ---: |" * len(columns))
        lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in section.rows]
        lines.append("")
    lines += [f"- {_escape(note)}" for note in notes]
    out.write("\n".join(lines).rstrip() + "\n")
