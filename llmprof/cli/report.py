"""Render a saved run again (table, Markdown, CSV, JSON, Chrome trace or plots), without torch or a GPU."""

from __future__ import annotations

import argparse

from llmprof.cli.common import CliError
from llmprof.cli.output import add_output_options, check_output_options, emit


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``report``."""
    parser.add_argument("run", metavar="RUN.json", help="a run saved by `llmprof run --json`")
    add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    """Load the run and render it; returns the exit status."""
    from llmprof.report.json_format import RunFormatError, load_run

    check_output_options(args)
    try:
        run = load_run(args.run)
    except RunFormatError as exc:
        raise CliError(str(exc)) from None
    if not run.measured:
        raise CliError(f"{args.run}: the run has no measured request")
    emit(run, args)
    return 0
