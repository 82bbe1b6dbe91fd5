"""The ranks of a distributed run as a table (one row per rank: its TTFT, TPOT, tokens, how often it was the
slowest, its clock) and notes (the per-step skew of the token times and of the forward ends, the slowest
rank). Never imports torch."""

from __future__ import annotations

import statistics

from llmprof.analysis.ranks import RanksReport, ranks_report
from llmprof.analysis.stats import percentile
from llmprof.report.summary import Section, format_number
from llmprof.runfile import Run

COLUMNS = ["host", "TTFT (ms)", "TPOT (ms)", "tokens / request", "slowest in", "clock offset to rank 0"]
COUNTERS = [("energy / request (J)", "energy_j"), ("CPU (%)", "cpu_percent")]  # shown when a rank has them


def _counter(value: float | None) -> str:
    return "-" if value is None else format_number(value)


def _ms(ns: float) -> str:
    return f"{format_number(ns / 1e6)} ms"


def _clock(rank: int, offset_ns: int, uncertainty_ns: int, same_host: bool) -> str:
    if rank == 0:
        return "0 (the reference)"
    if same_host and offset_ns == 0 and uncertainty_ns == 0:
        return "0 (same host: one clock)"
    return f"{offset_ns / 1e3:+.1f} us +- {uncertainty_ns / 1e3:.1f} us"


def ranks_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The ranks table and its notes; none for a run of one rank."""
    if not run.ranks or len(run.ranks) < 2:
        return [], []
    report = ranks_report(run.ranks)
    steps = len(report.skews)
    host0 = run.ranks[0].hostname
    section = Section(
        f"Ranks ({len(report.ranks)}, medians over the measured requests; per-step skew below)",
        "rank",
        columns=COLUMNS,
    )
    extra = [
        (label, name) for label, name in COUNTERS if any(getattr(r, name) is not None for r in report.ranks)
    ]
    section.columns = COLUMNS[:4] + [label for label, _ in extra] + COLUMNS[4:]
    for r in report.ranks:
        counters = [_counter(getattr(r, name)) for _, name in extra]
        section.rows.append(
            [
                str(r.rank),
                r.hostname,
                format_number(r.ttft * 1e3),
                "-" if r.tpot is None else format_number(r.tpot * 1e3),
                ",".join(map(str, sorted(set(r.output_tokens)))),
                *counters,
                f"{r.slowest_steps} of {steps} steps",
                _clock(r.rank, r.offset_ns, r.uncertainty_ns, r.hostname == host0),
            ]
        )
    headline = "the metrics, breakdown and telemetry above are rank 0's; this table has every rank's"
    return [section], [headline, *skew_notes(report), *(f"warning: {w}" for w in report.warnings)]


def skew_notes(report: RanksReport) -> list[str]:
    """The skew of the token times and of the forward ends across ranks, per step, and the slowest rank."""
    if not report.skews:
        return ["skew: no step was recorded by every rank"]
    tokens = [s.token_skew_ns for s in report.skews]
    worst = max(report.skews, key=lambda s: s.token_skew_ns)
    spread = f"median {_ms(statistics.median(tokens))}, p99 {_ms(percentile(tokens, 99))}"
    where = f"request {worst.request + 1}, step {worst.step}"
    notes = [
        f"token-time skew across ranks (max - min of T_k, per step): {spread}, max {_ms(worst.token_skew_ns)} ({where})"
    ]
    ends = [s.forward_end_skew_ns for s in report.skews if s.forward_end_skew_ns is not None]
    if ends:
        notes.append(
            f"forward-end skew: median {_ms(statistics.median(ends))}, p99 {_ms(percentile(ends, 99))}"
        )
    slowest = report.slowest_rank
    count = next(r.slowest_steps for r in report.ranks if r.rank == slowest)
    notes.append(f"slowest rank: {slowest} (its token came last in {count} of {len(report.skews)} steps)")
    if report.clock_uncertainty_ns:
        notes.append(
            f"skews are known to within +-{_ms(2 * report.clock_uncertainty_ns)} (the ranks' clock offsets)"
        )
    return notes
