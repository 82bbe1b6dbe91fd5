"""Render a saved run or sweep again, in any format, without torch or a GPU.

A run: table, Markdown, CSV, JSON, Chrome or Perfetto trace, plots. A sweep: one row per point (table,
Markdown, CSV, JSON, plot), or one point's run alone with --point."""

from __future__ import annotations

import argparse

from llmprof.cli.common import check_distinct
from llmprof.cli.output import Output, add_output_options, emit, emit_sweep, output_of
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

    output = output_of(args)
    check_distinct([args.run], {"--output": output.path})
    with Stages(3) as stages:  # a bar on the terminal when loading and rendering take more than a second
        stages.step(f"loading {args.run}")
        document = load_document(args.run)
        _render(document, args.run, args.point, output, stages)
    return 0


def _render(document: object, path: str, point: str | None, output: Output, stages: Stages) -> None:
    """Render a loaded run or sweep (from ``path``; of a sweep, its ``point``'s run alone) as ``output`` asks."""
    from llmprof.sweepfile import Sweep

    if isinstance(document, Sweep) and point is not None:
        document = document.select(point).run
    elif isinstance(document, Sweep):
        if output.per_step or output.kernel_rows:
            raise UsageError("--per-step and --kernels are for a run: pick a point of the sweep with --point")
        stages.close()
        emit_sweep(document, output)
        return
    elif point is not None:
        raise UsageError(f"--point is for a sweep: {path} holds one run")
    if not document.measured:
        raise UsageError(f"{path}: the run has no measured request")
    if output.kernel_rows and document.kernels is None:
        raise UsageError(f"{path}: the run has no kernels (run it with --kernels N)")
    emit(document, output, stages)
