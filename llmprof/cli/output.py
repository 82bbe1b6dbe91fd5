"""The output options that ``run`` and ``report`` share: --format, -o/--output, --per-step."""

from __future__ import annotations

import argparse
import sys

from llmprof.cli.common import CliError, check_output_path
from llmprof.report import BINARY_FORMATS, FORMATS


def add_output_options(parser: argparse.ArgumentParser, default_format: str = "table") -> None:
    """Declare --format, -o/--output and --per-step."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default_format,
        help=f"output format (default {default_format}); plot writes a PNG",
    )
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write the output here (atomically) instead of stdout"
    )
    parser.add_argument(
        "--per-step", action="store_true", help="CSV: one row per decode step, not per request"
    )


def check_output_options(args: argparse.Namespace) -> None:
    """Fail before any work on options that cannot be honoured."""
    check_output_path(args.output, "--output")
    if args.format in BINARY_FORMATS and args.output is None:
        raise CliError(f"--format {args.format} writes a PNG: give it a file with -o/--output")
    if args.per_step and args.format != "csv":
        raise CliError("--per-step goes with --format csv")
    if args.format == "plot":
        from llmprof.report.plot import PlotUnavailable, check_available

        try:
            check_available()
        except PlotUnavailable as exc:
            raise CliError(str(exc)) from None


def emit(run: object, args: argparse.Namespace) -> None:
    """Render ``run`` as asked and write it to the output (or stdout)."""
    from llmprof.report import render
    from llmprof.report.json_format import write_atomic

    if args.format == "table" and args.output is None:
        from llmprof.report.table import render_table

        render_table(run)  # straight to the terminal, with its colours
        return
    data = render(run, args.format, per_step=args.per_step)
    if args.output is None:
        sys.stdout.write(data)
        return
    write_atomic(args.output, data)
    print(f"{args.format} written to {args.output}", file=sys.stderr)
