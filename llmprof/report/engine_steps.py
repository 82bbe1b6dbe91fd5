"""An engine's steps (vLLM) in the run report: the table of their phases, requests, tokens and KV-cache usage
per step (:mod:`llmprof.analysis.engine_steps`), and their CSV, one row per step; and vLLM's own accounting of
its requests beside llmprof's. Never imports torch or vLLM."""

from __future__ import annotations

import statistics
from typing import IO

from llmprof.analysis import registry
from llmprof.analysis.engine_steps import (
    COLUMNS,
    COUNTS,
    PHASES,
    ReportedAccounting,
    engine_step_stats,
    reported_accounting,
    step_durations,
)
from llmprof.report.csv_format import cell
from llmprof.report.summary import Section, format_number, summary_row
from llmprof.runfile import Run

COUNT_LABELS = {
    "requests": ("requests", "req"),
    "prefill_tokens": ("prefill", "tok"),
    "decode_tokens": ("decode", "tok"),
}


def engine_steps_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The table "Engine steps (N steps, per step)" of a run with an engine's steps, and its notes; nothing
    for a run without."""
    if run.engine_steps is None:
        return [], []
    stats = engine_step_stats(run.engine_steps)
    warmups = f"; {stats.warmup_steps} warm-up steps left out" if stats.warmup_steps else ""
    notes = [f"engine steps: {stats.steps} measured{warmups}; phases on the host clock"]
    if not stats.steps:
        return [], notes
    section = Section(f"Engine steps ({stats.steps} steps, per step)", "per step")
    step_first = sorted(stats.phases.items(), key=lambda item: item[0] != "step")
    section.rows += [summary_row(name, summary, "s") for name, summary in step_first]
    section.rows += [
        summary_row(COUNT_LABELS[name][0], stats.counts[name], COUNT_LABELS[name][1]) for name in COUNTS
    ]
    if stats.kv_usage is not None:
        section.rows.append(summary_row("KV cache used", stats.kv_usage, "ratio"))
    return [section], notes


REPORTED_NOTE = (
    "vLLM's own accounting: vLLM stamps a token when its scheduler updates the request with the step's output"
    " (the step's output update, after sampling): llmprof's T_k is the end of sampling"
)


def reported_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The table "vLLM's own accounting" of a run whose measured requests carry vLLM's figures: the TTFT by
    llmprof and by vLLM, and how long after llmprof's T_1 and last T_k vLLM stamped the first and last token
    (median, max); its note, and a warning where llmprof's time is the later. Nothing for a run without."""
    accounting = reported_accounting(run.measured, run.metrics())
    if accounting is None:
        return [], []
    n = len(accounting.ttft)
    of = f"{n} of {accounting.requests}" if n < accounting.requests else str(n)
    unit, scale = registry.display("s")
    rows = {
        "TTFT, llmprof": accounting.ttft,
        "TTFT, vLLM": accounting.reported_ttft,
        "vLLM's first token - T_1": accounting.first_token_after,
        "vLLM's last token - last T_k": accounting.last_token_after,
    }
    section = Section(f"vLLM's own accounting ({of} requests)", "measure", columns=["median", "max"])
    section.rows = [
        [f"{label} ({unit})", *(format_number(v * scale) for v in (statistics.median(values), max(values)))]
        for label, values in rows.items()
    ]
    return [section], [REPORTED_NOTE, *_later_warnings(accounting)]


def _later_warnings(accounting: ReportedAccounting) -> list[str]:
    """A warning for each of T_1 and last T_k that is later than vLLM's stamp in some request."""
    unit, scale = registry.display("s")
    warnings = []
    for stamp, mine, after in (
        ("first", "T_1", accounting.first_token_after),
        ("last", "last T_k", accounting.last_token_after),
    ):
        later = [-a for a in after if a < 0]
        if later:
            warnings.append(
                f"warning: llmprof's {mine} is later than vLLM's {stamp} token stamp in {len(later)} of"
                f" {len(after)} requests (by up to {format_number(max(later) * scale)} {unit}): it should"
                " never happen"
            )
    return warnings


def render_csv(run: Run, out: IO[str]) -> None:
    """One row per engine step (warm-ups flagged): its columns as stored, then each phase's seconds."""
    steps = run.engine_steps or {column: [] for column in COLUMNS}
    durations = step_durations(steps)
    phases = [f"{name.replace(' ', '_')}_s" for name, _, _ in PHASES]
    out.write(",".join(["step", *COLUMNS, *phases]) + "\n")
    seconds = [(d * 1e-9).tolist() for d in durations.values()]
    columns = [steps[name] for name in COLUMNS]
    for i, row in enumerate(zip(*columns, *seconds)):
        cells = [i, *(int(v) if isinstance(v, bool) else v for v in row)]
        out.write(",".join(str(cell(v)) for v in cells) + "\n")
