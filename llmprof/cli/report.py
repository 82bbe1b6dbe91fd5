"""Render a saved run or sweep again, in any format, without torch or a GPU.

A run: table, Markdown, CSV, JSON, Chrome or Perfetto trace, plots. A sweep: one row per point (table,
Markdown, CSV, JSON, plot), or one point's run alone with --point."""

from __future__ import annotations

import argparse

from llmprof.cli.common import check_distinct
from llmprof.cli.output import add_output_options, check_output_options, emit, emit_sweep
from llmprof.cli.progress import Stages
from llmprof.errors import UsageError


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``report``."""
    parser.add_argument(
        "run",
        metavar="RUN.json",
        help="a run saved by `llmprof run --json` (or a sweep by `llmprof sweep --json`)",
    )
    add_output_options(parser, kernel_rows=True)
    parser.add_argument(
        "--point",
        metavar="AXIS=V,...",
        help="of a sweep: render that point's run alone, in any run format (e.g. batch_size=4,depth=256)",
    )


def main(args: argparse.Namespace) -> int:
    """Load the run (or sweep) and render it; returns the exit status."""
    from llmprof.sweepfile import load_document

    check_output_options(args)
    check_distinct([args.run], {"--output": args.output})
    with Stages(3) as stages:  # a bar on the terminal when loading and rendering take more than a second
        stages.step(f"loading {args.run}")
        document = load_document(args.run)
        return _render(document, args, stages)


def _render(document: object, args: argparse.Namespace, stages: Stages) -> int:
    """Render a loaded run or sweep as ``args`` ask."""
    from llmprof.sweepfile import Sweep

    if isinstance(document, Sweep) and args.point is not None:
        document = document.select(args.point).run
    elif isinstance(document, Sweep):
        if args.per_step or args.kernel_rows:
            raise UsageError("--per-step and --kernels are for a run: pick a point of the sweep with --point")
        stages.close()
        emit_sweep(document, args)
        return 0
    elif args.point is not None:
        raise UsageError(f"--point is for a sweep: {args.run} holds one run")
    if not document.measured:
        raise UsageError(f"{args.run}: the run has no measured request")
    if args.kernel_rows and document.kernels is None:
        raise UsageError(f"{args.run}: the run has no kernels (run it with --kernels N)")
    emit(document, args, stages)
    return 0
