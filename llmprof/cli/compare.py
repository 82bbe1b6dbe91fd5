"""Compare saved runs, or two sweeps point by point: per metric, the ratio of medians and its 95% CI.

Per metric, the ratio of medians with a 95% bootstrap CI and a verdict (faster, slower, no significant
difference); each run after the first is compared with the first. --fail-on METRIC:+N% exits 1 when B
regressed past the threshold with confidence (for CI), or when it cannot judge it (too few repeats, the metric or
a point missing on one side) unless --allow-unjudged."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.output import write_plot
from llmprof.errors import UsageError

if TYPE_CHECKING:
    from llmprof.analysis.compare import Gate


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``compare``."""
    parser.add_argument(
        "runs", nargs="+", metavar="RUN.json", help="the baseline A, then the runs to compare"
    )
    add_comparison_output(parser)


def add_comparison_output(parser: argparse.ArgumentParser) -> None:
    """--format and -o/--output of a comparison (shared with ``ab``)."""
    parser.add_argument(
        "--format", choices=("table", "md", "plot"), default="table", help="plot writes a PNG (needs -o)"
    )
    parser.add_argument("-o", "--output", metavar="PATH", help="write the comparison here instead of stdout")
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        type=fail_on,
        metavar="METRIC:+N%",
        help="exit 1 when B / A of METRIC lies wholly past +N%% (or -N%%) with 95%% confidence, e.g."
        " tpot:+2%% or tps:-5%% (repeatable; without a sign, the metric's worse side); a threshold it cannot"
        " judge (too few repeats, the metric or point missing on one side) exits 1 too",
    )
    parser.add_argument(
        "--allow-unjudged",
        action="store_true",
        help="with --fail-on: a threshold that cannot be judged is said on stderr but does not fail",
    )


def fail_on(text: str) -> object:
    """argparse type: a --fail-on threshold."""
    from llmprof.analysis.compare import Threshold

    try:
        return Threshold.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def failed_thresholds(gate: Gate, allow_unjudged: bool = False) -> int:
    """Say each regression past a --fail-on threshold, and each threshold that could not be judged, on stderr;
    the exit status: 1 if any regressed, or any could not be judged unless ``allow_unjudged``, else 0."""
    for line in gate.regressions:
        print(f"llmprof: regression past --fail-on {line}", file=sys.stderr)
    for line in gate.unjudged:
        allowed = " (allowed by --allow-unjudged)" if allow_unjudged else ""
        print(f"llmprof: {line}{allowed}", file=sys.stderr)
    return 1 if gate.regressions or (gate.unjudged and not allow_unjudged) else 0


def check_comparison_output(args: argparse.Namespace) -> None:
    """Fail before any work on a comparison output that cannot be written."""
    check_output_path(args.output, "--output")
    if args.format == "plot":
        if args.output is None:
            raise UsageError("--format plot writes a PNG: give it a file with -o/--output")
        from llmprof.report.plot import check_available

        check_available()


def emit_comparison(reports: list, runs: list, args: argparse.Namespace) -> None:
    """Render the comparison reports (of ``runs``: A, then each B) as asked, to the output or stdout."""
    from llmprof.report.comparison import (
        render_comparison_markdown,
        render_comparison_table,
        with_run_warnings,
    )

    reports = [with_run_warnings(report, runs[0], run) for report, run in zip(reports, runs[1:])]
    if args.format == "plot":
        from llmprof.report.plot import render_comparison

        write_plot(lambda png: render_comparison(reports, runs, png), args.output)
        return
    if args.format == "md":
        write_text(render_comparison_markdown(reports), args)
    else:
        write_text(render_comparison_table(reports, text_width(args)), args)


def text_width(args: argparse.Namespace) -> int:
    """The width of a comparison's terminal table: the terminal's on stdout, a file's (COLUMNS or 140) with -o."""
    from llmprof.report.table import width_of

    return width_of(sys.stdout if args.output is None else None)


def write_text(text: str, args: argparse.Namespace) -> None:
    """A comparison's text to the output (atomically) or stdout."""
    from llmprof.runfile import write_atomic

    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.output, text)
        print(f"comparison written to {args.output}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    """Load the runs (or sweeps) and compare each with the first; returns the exit status (1 when a --fail-on
    threshold is passed)."""
    from llmprof.analysis.compare import Gate, compare_kernels, compare_runs, regressions, setup_differences
    from llmprof.report.comparison import ComparisonReport

    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs: A.json B.json [C.json ...]")
    check_comparison_output(args)
    check_distinct(args.runs, {"--output": args.output})
    documents = [_load(path) for path in args.runs]
    kinds = {type(d).__name__ for d in documents}
    if len(kinds) > 1:
        raise UsageError("compare runs with runs and sweeps with sweeps, not a mix")
    if kinds == {"Sweep"}:
        return _compare_sweeps(documents, args)
    runs = documents
    reports = [
        ComparisonReport(
            args.runs[0],
            path,
            compare_runs(runs[0], run),
            setup_differences(runs[0], run),
            compare_kernels(runs[0], run),
        )
        for path, run in zip(args.runs[1:], runs[1:])
    ]
    emit_comparison(reports, runs, args)
    gate = sum((regressions(r.comparisons, args.fail_on, r.name_b) for r in reports), Gate())
    return failed_thresholds(gate, args.allow_unjudged)


def _load(path: str) -> object:
    """The run or sweep at ``path``; raises UsageError for a run without a measured request."""
    from llmprof.runfile import Run
    from llmprof.sweepfile import load_document

    document = load_document(path)
    if isinstance(document, Run) and not document.measured:
        raise UsageError(f"{path}: the run has no measured request")
    return document


def _compare_sweeps(sweeps: list, args: argparse.Namespace) -> int:
    """Each sweep after the first against it, point by point."""
    from llmprof.analysis.compare import Gate, regressions
    from llmprof.report.sweep import compare_points, render_comparison, sweep_differences

    compared, gate = [], Gate()
    for path, sweep in zip(args.runs[1:], sweeps[1:]):
        points = compare_points(sweeps[0], sweep)
        compared.append((args.runs[0], path, points))
        for p in points:
            where = f"{path} at " + " ".join(f"{k}={v}" for k, v in p.params.items())
            gate += regressions(p.comparisons, args.fail_on, where, p.missing)
    if args.format == "plot":
        from llmprof.report.plot import render_sweep_comparison

        write_plot(lambda png: render_sweep_comparison(compared, png), args.output)
    else:
        text = ""
        for (name_a, name_b, points), sweep in zip(compared, sweeps[1:]):
            axes = list(dict.fromkeys([*sweeps[0].axes, *sweep.axes]))
            warnings = sweep_differences(sweeps[0], sweep)
            text += render_comparison(points, axes, (name_a, name_b), args.format, text_width(args), warnings)
        write_text(text, args)
    return failed_thresholds(gate, args.allow_unjudged)
