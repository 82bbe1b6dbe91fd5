"""The kernel tables of a run (per phase: the top operators/kernels of a step) and the kernel diff of two runs,
as plain rows for the terminal table and Markdown, and as CSV. Never imports torch."""

from __future__ import annotations

import math
import statistics
from typing import IO

from llmprof.analysis.kernels import (
    MIN_CALLS,
    MIN_EFFECT,
    PHASES,
    KernelCapture,
    KernelDiff,
    KernelTable,
    kernel_table,
)
from llmprof.report.csv_format import cell
from llmprof.report.summary import Section, format_number
from llmprof.runfile import Run

TOP = 12  # operators/kernels shown per phase
TABLE_COLUMNS = ["calls / step", "time / step (ms)", "share of step"]
DIFF_CI = "95% CI of B - A"
DIFF_COLUMNS = ["A (ms/step)", "B (ms/step)", "B - A (ms/step)", DIFF_CI, "verdict"]
DIFF_SHORT = ["A", "B", "B - A", "95% CI", "verdict"]  # a narrow terminal's headers, with DIFF_CAPTION
DIFF_CAPTION = "A, B (means over the calls), B - A and its CI: ms per step"
OUTSIDE = {True: "device idle", False: "outside operators"}  # the step's part no kernel/operator covers


def _ms(ns: float) -> str:
    return format_number(ns / 1e6)


def _steps(steps: list[int]) -> str:
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}..{steps[-1]}"


def kernel_sections(run: Run, top: int = TOP) -> tuple[list[Section], list[str]]:
    """One table per phase of the run's kernel capture (none without one), and the notes below them."""
    capture = run.kernels
    if capture is None:
        return [], []
    several = f"{capture.calls} calls" if capture.calls > 1 else ""
    tables = {phase: kernel_table(capture, phase) for phase in PHASES}
    sections = [_phase_section(table, capture, several, top) for table in tables.values() if table.steps]
    notes = [
        (
            f"kernels: {several or 'one call'} under {capture.source} after the repeats"
            f" ({'their' if several else 'its'} steps are slower than the measured ones: profiler overhead);"
            f" {'the worst' if several else 'its'} clock aligned with llmprof's within"
            f" {capture.alignment_ns / 1e3:.1f} us"
        )
    ]
    measured = [m.tpot for m in run.metrics() if m.tpot is not None]
    decode = tables["decode"]
    if measured and decode.steps:
        notes.append(
            f"kernels: captured decode step {_ms(decode.step_ns)} ms against the measured TPOT"
            f" {format_number(statistics.median(measured) * 1e3)} ms (median)"
        )
    return sections, notes


def _phase_section(table: KernelTable, capture: KernelCapture, several: str, top: int) -> Section:
    """The table of one phase: its ``top`` operators/kernels per step, the others, all of them, the step and
    the part none covers (``several``: how many calls were captured, empty for one)."""
    what = "device kernels" if capture.has_device else "host operators, by self time"
    count = len(table.steps)
    section = Section(
        f"Kernels: {table.phase} (per step, median over {several}{' of ' * bool(several)}{count} captured"
        f" step{'s' * (count > 1)}"
        f" {_steps(table.steps)}; {what})",
        "operator" if not capture.has_device else "kernel",
        columns=TABLE_COLUMNS,
    )
    for row in table.rows[:top]:
        section.rows.append([row.name, f"{row.calls:g}", _ms(row.time_ns), f"{row.share:.1%}"])
    rest = table.rows[top:]
    if rest:
        rest_ns = sum(r.time_ns for r in rest)
        section.rows.append([f"({len(rest)} others)", "", _ms(rest_ns), f"{rest_ns / table.step_ns:.1%}"])
    covered = table.total_ns / table.step_ns if table.step_ns else 0.0
    section.rows.append(
        [
            "all " + ("kernels" if capture.has_device else "operators"),
            "",
            _ms(table.total_ns),
            f"{covered:.1%}",
        ]
    )
    section.rows.append(["step (captured call's timeline)", "", _ms(table.step_ns), "100.0%"])
    idle = f"{OUTSIDE[capture.has_device]} ({'launch gaps, host waits' if capture.has_device else 'Python, loop'})"
    section.rows.append([idle, "", _ms(table.step_ns * table.idle_share), f"{table.idle_share:.1%}"])
    return section


def diff_section(diff: KernelDiff, name_a: str, name_b: str, top: int = TOP) -> tuple[Section, list[str]]:
    """The kernel diff as a table, ranked by absolute change, how it was computed, and the TPOT change as the
    sum of the listed changes, the others, the part outside operators and the rest."""
    section = Section(
        f"Kernel diff: {diff.phase} (B = {name_b} against A = {name_a})",
        "operator/kernel",
        columns=DIFF_COLUMNS,
    )
    for c in diff.changes[:top]:
        ci = "-" if math.isnan(c.ci_low_ns) else f"{c.ci_low_ns / 1e6:+.3f} .. {c.ci_high_ns / 1e6:+.3f}"
        row = [c.name, _ms(c.a_ns), _ms(c.b_ns), f"{c.change_ns / 1e6:+.3f}", ci, diff.verdict(c)]
        section.rows.append(row)
    calls_a, calls_b = diff.calls
    if not diff.has_ci:
        few = "one captured call" if min(diff.calls) == 1 else f"{min(diff.calls)} captured calls"
        how = f"{few} (A {calls_a}, B {calls_b}): no CI (it needs {MIN_CALLS} calls a side: --kernel-calls)"
    else:
        floor = f"{MIN_EFFECT:.1%} of A's step ({_ms(MIN_EFFECT * diff.step_ns_a)} ms)"
        how = (
            f"the 95% CI is over the captured calls (A {calls_a}, B {calls_b}; Welch's t); changed: it excludes 0 and"
            f" the change is at least {floor} (smaller: negligible; the sum below counts every change)"
        )
    notes = [f"kernel diff: per side the mean over its calls of each call's mean per step; {how}"]
    notes += [f"warning: {w}" for w in diff.warnings]
    accounting = diff.accounting(top)
    if accounting is not None and diff.tpot_change_ns is not None:
        named, others, outside, rest = accounting
        count = len(diff.changes) - len(named)
        terms = [f"{c.name} {c.change_ns / 1e6:+.3f}" for c in named]
        terms += [f"{count} other{'s' * (count != 1)} {others / 1e6:+.3f}"] if count else []
        terms += [f"{OUTSIDE[diff.has_device]} {outside / 1e6:+.3f}", f"rest {rest / 1e6:+.3f}"]
        line = f"TPOT {diff.tpot_change_ns / 1e6:+.3f} ms/step = " + " + ".join(terms)
        if named and diff.tpot_change_ns:
            shares = ", ".join(f"{c.name} {c.change_ns / diff.tpot_change_ns:.0%}" for c in named)
            line += f" (explained: {shares})"
        notes.append(line)
    return section, notes


def render_csv(run: Run, out: IO[str]) -> None:
    """One row per captured step and operator/kernel (with several captured calls, per call too: a first
    column ``call``): phase, step, name, device (-1: host), calls, time (each value written by
    :func:`~llmprof.report.csv_format.cell`)."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    capture = run.kernels
    several = capture is not None and capture.calls > 1
    writer.writerow(["call"] * several + ["phase", "step", "name", "device", "calls", "time_ns", "step_ns"])
    if capture is None:
        return
    totals = capture.totals()
    for call in range(capture.calls):
        for phase in PHASES:
            for step in capture.phase_steps(phase):
                rows = sorted(
                    ((k, v) for k, v in totals.items() if k[2:] == (call, step)),
                    key=lambda kv: (-kv[1][1], kv[0]),
                )
                for (name, dev, _, _), (calls, time) in rows:
                    row = [phase, step, name, dev, calls, time, capture.step_time(step, call)]
                    writer.writerow([cell(value) for value in [call] * several + row])
