"""Every table of a run and the notes below them, in the order the text reporters show them: the summary
(metrics, breakdown, roofline, telemetry), an engine's steps and its own accounting, the GPUs of a device_map
model, the captured kernels, the ranks."""

from __future__ import annotations

from llmprof.report.devices import devices_sections
from llmprof.report.engine_steps import engine_steps_sections, reported_sections
from llmprof.report.kernels import kernel_sections
from llmprof.report.ranks import ranks_sections
from llmprof.report.summary import Section, summary_sections
from llmprof.runfile import Run


def run_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The sections of ``run`` and its notes (the summary's, then the engine steps', the engine's accounting's,
    the devices', the kernels', the ranks')."""
    sections, notes = summary_sections(run)
    more_sections = (
        engine_steps_sections(run),
        reported_sections(run),
        devices_sections(run),
        kernel_sections(run),
        ranks_sections(run),
    )
    for more, more_notes in more_sections:
        sections += more
        notes += more_notes
    return sections, notes
