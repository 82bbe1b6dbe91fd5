"""Render a saved run again (table, Markdown, CSV, JSON, Chrome trace or plots), without torch or a GPU."""

from __future__ import annotations

import argparse

from llmprof.cli.common import check_distinct
from llmprof.cli.output import add_output_options, check_output_options, emit
from llmprof.errors import UsageError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``report``."""
    parser.add_argument("run", metavar="RUN.json", help="a run saved by `llmprof run --json`")
    add_output_options(parser, kernel_rows=True)


def main(args: argparse.Namespace) -> int:
    """Load the run and render it; returns the exit status."""
    from llmprof.runfile import load_run

    check_output_options(args)
    check_distinct([args.run], {"--output": args.output})
    run = load_run(args.run)
    if not run.measured:
        raise UsageError(f"{args.run}: the run has no measured request")
    if args.kernel_rows and run.kernels is None:
        raise UsageError(f"{args.run}: the run has no kernels (run it with --kernels N)")
    emit(run, args)
    return 0
