"""Compare saved runs: per metric the ratio of medians with a 95% bootstrap CI and a verdict (faster, slower,
no significant difference); each run after the first is compared with the first."""

from __future__ import annotations

import argparse
import sys

from llmprof.cli.common import check_distinct, check_output_path
from llmprof.errors import UsageError


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
    from llmprof.report.comparison import render_comparison_markdown, render_comparison_table
    from llmprof.runfile import write_atomic

    if args.format == "plot":
        import io

        from llmprof.report.plot import render_comparison

        png = io.BytesIO()
        render_comparison(reports, runs, png)
        write_atomic(args.output, png.getvalue())
        print(f"plot written to {args.output}", file=sys.stderr)
        return
    text = render_comparison_markdown(reports) if args.format == "md" else render_comparison_table(reports)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.output, text)
        print(f"comparison written to {args.output}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    """Load the runs and compare each with the first; returns the exit status."""
    from llmprof.analysis.compare import compare_kernels, compare_runs, setup_differences
    from llmprof.report.comparison import ComparisonReport
    from llmprof.runfile import load_run

    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs: A.json B.json [C.json ...]")
    check_comparison_output(args)
    check_distinct(args.runs, {"--output": args.output})
    runs = []
    for path in args.runs:
        run = load_run(path)
        if not run.measured:
            raise UsageError(f"{path}: the run has no measured request")
        runs.append(run)
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
    return 0
