"""An engine's steps (vLLM) in the run report: the table of their phases, requests, tokens and KV-cache usage
per step (:mod:`llmprof.analysis.engine_steps`), and their CSV, one row per step. Never imports torch or vLLM."""

from __future__ import annotations

from typing import IO

from llmprof.analysis.engine_steps import COLUMNS, COUNTS, PHASES, engine_step_stats, step_durations
from llmprof.report.csv_format import cell
from llmprof.report.summary import Section, summary_row
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
