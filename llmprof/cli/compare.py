"""Compare saved runs, or two sweeps point by point: per metric, the ratio of medians and its 95% CI.

Per metric, the ratio of medians with a 95% bootstrap CI and a verdict (faster, slower, no significant
difference); each run after the first is compared with the first. --fail-on METRIC:+N% exits 1 when B
regressed past the threshold with confidence (for CI), or when it cannot judge it (too few repeats, the metric or
a point missing on one side) unless --allow-unjudged."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmprof.cli.common import check_distinct
from llmprof.cli.output import Output, add_output_options, output_of, png, write
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
    """--format, -o/--output and the gate of a comparison (shared with ``ab``)."""
    add_output_options(
        parser,
        ("table", "md", "plot"),
        "plot writes a PNG (needs -o)",
        "write the comparison here instead of stdout",
        run_rows=False,
    )
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


def emit_comparison(reports: list, runs: list, output: Output) -> None:
    """Render the comparison reports (of ``runs``: A, then each B) as asked, to the output or stdout."""
    from llmprof.report.comparison import (
        render_comparison_markdown,
        render_comparison_table,
        with_run_warnings,
    )

    reports = [with_run_warnings(report, runs[0], run) for report, run in zip(reports, runs[1:])]
    if output.format == "plot":
        from llmprof.report.plot import render_comparison

        write(output, _no_stdout, lambda: png(lambda out: render_comparison(reports, runs, out)), "plot")
    elif output.format == "md":
        write_text(lambda: render_comparison_markdown(reports), output)
    else:
        write_text(lambda width: render_comparison_table(reports, width), output)


def write_text(text: Callable[..., str], output: Output) -> None:
    """A comparison's text to the output (atomically, at a file's width) or stdout (at the terminal's):
    ``text(width)`` for a table, ``text()`` for Markdown."""
    from llmprof.report.table import width_of

    def at(width: int) -> str:
        return text(width) if output.format == "table" else text()

    write(
        output,
        lambda: sys.stdout.write(at(width_of(sys.stdout))),
        lambda: at(width_of(None)),  # a file's width: COLUMNS or 140
        "comparison",
    )


def _no_stdout() -> None:
    raise AssertionError("a PNG is written to a file (-o), checked before any work")


def main(args: argparse.Namespace) -> int:
    """Load the runs (or sweeps) and compare each with the first; returns the exit status (1 when a --fail-on
    threshold is passed)."""
    from llmprof.analysis.compare import Gate, compare_kernels, compare_runs, regressions, setup_differences
    from llmprof.report.comparison import ComparisonReport

    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs: A.json B.json [C.json ...]")
    output = output_of(args)
    check_distinct(args.runs, {"--output": output.path})
    documents = [_load(path) for path in args.runs]
    kinds = {type(d).__name__ for d in documents}
    if len(kinds) > 1:
        raise UsageError("compare runs with runs and sweeps with sweeps, not a mix")
    if kinds == {"Sweep"}:
        return _compare_sweeps(documents, args.runs, output, args.fail_on, args.allow_unjudged)
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
    emit_comparison(reports, runs, output)
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


def _compare_sweeps(
    sweeps: list, paths: list[str], output: Output, thresholds: list, allow_unjudged: bool
) -> int:
    """Each sweep after the first (from ``paths``) against it, point by point; the exit status of the
    ``thresholds`` (--fail-on)."""
    from llmprof.analysis.compare import Gate, regressions
    from llmprof.report.sweep import compare_points, render_comparison, sweep_differences

    compared, gate = [], Gate()
    for path, sweep in zip(paths[1:], sweeps[1:]):
        points = compare_points(sweeps[0], sweep)
        compared.append((paths[0], path, points))
        for p in points:
            where = f"{path} at " + " ".join(f"{k}={v}" for k, v in p.params.items())
            gate += regressions(p.comparisons, thresholds, where, p.missing)
    if output.format == "plot":
        from llmprof.report.plot import render_sweep_comparison

        write(output, _no_stdout, lambda: png(lambda out: render_sweep_comparison(compared, out)), "plot")
    else:

        def text(width: int | None = None) -> str:
            out = ""
            for (name_a, name_b, points), sweep in zip(compared, sweeps[1:]):
                axes = list(dict.fromkeys([*sweeps[0].axes, *sweep.axes]))
                warnings = sweep_differences(sweeps[0], sweep)
                out += render_comparison(points, axes, (name_a, name_b), output.format, width, warnings)
            return out

        write_text(text, output)
    return failed_thresholds(gate, allow_unjudged)
