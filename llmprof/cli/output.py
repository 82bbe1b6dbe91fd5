"""The output options that ``run`` and ``report`` share: --format, -o/--output, --per-step."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import IO, Any

from llmprof.cli.common import check_output_path
from llmprof.cli.progress import Stages
from llmprof.errors import UsageError
from llmprof.report import BINARY_FORMATS, FORMATS


def add_output_options(
    parser: argparse.ArgumentParser, default_format: str = "table", kernel_rows: bool = False
) -> None:
    """Declare --format, -o/--output and --per-step (and, with ``kernel_rows``, --kernels: CSV rows per
    captured step and operator/kernel)."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default_format,
        help=f"output format (default {default_format}); plot writes a PNG, perfetto a binary Perfetto trace"
        " (trace: the same as JSON)",
    )
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write the output here (atomically) instead of stdout"
    )
    parser.add_argument(
        "--per-step", action="store_true", help="CSV: one row per decode step, not per request"
    )
    if kernel_rows:
        parser.add_argument(
            "--kernels",
            dest="kernel_rows",
            action="store_true",
            help="CSV: one row per captured step and operator/kernel (of a run --kernels)",
        )


def check_output_options(args: argparse.Namespace) -> None:
    """Fail before any work on options that cannot be honoured."""
    check_output_path(args.output, "--output")
    if args.format in BINARY_FORMATS and args.output is None:
        raise UsageError(
            f"--format {args.format} writes {BINARY_FORMATS[args.format]}: give it a file with -o/--output"
        )
    if args.per_step and args.format != "csv":
        raise UsageError("--per-step goes with --format csv")
    if getattr(args, "kernel_rows", False) and (args.format != "csv" or args.per_step):
        raise UsageError("--kernels goes with --format csv (and not with --per-step)")
    if args.format == "plot":
        from llmprof.report.plot import check_available

        check_available()
    if args.format == "perfetto":
        from llmprof.report.perfetto_trace import check_available

        check_available()


def emit(
    run: object, args: argparse.Namespace, stages: Stages | None = None, only_copy: bool = False
) -> None:
    """Render ``run`` as asked and write it to the output (or stdout); ``stages``: the progress bar to step
    through rendering and writing (ended before anything is written to stdout). ``only_copy``: the output is
    the run's only copy (no run file kept it), so when it cannot be written (a full disk) the table is shown on
    stdout before the error is raised."""
    from llmprof.report import render, renderer
    from llmprof.runfile import write_atomic

    kernels = getattr(args, "kernel_rows", False)
    if args.output is None:  # straight to the terminal (the table with its colours)
        if stages is not None:
            stages.close()
        renderer(args.format, per_step=args.per_step, kernels=kernels)(run, sys.stdout)
        return
    if stages is not None:
        stages.step(f"rendering {args.format}")
    data = render(run, args.format, per_step=args.per_step, kernels=kernels)
    if stages is not None:
        stages.step(f"writing {args.output}")
    try:
        write_atomic(args.output, data)
    except OSError:
        if only_copy:  # the results are not lost with the file: the table, then the error
            renderer("table")(run, sys.stdout)
        raise
    finally:
        if stages is not None:
            stages.close()
    print(f"{args.format} written to {args.output}", file=sys.stderr)


def write_plot(draw: Callable[[IO[bytes]], None], path: str) -> None:
    """Draw a PNG into memory with ``draw``, then write it to ``path`` atomically, and say so."""
    import io

    from llmprof.runfile import write_atomic

    png = io.BytesIO()
    draw(png)
    write_atomic(path, png.getvalue())
    print(f"plot written to {path}", file=sys.stderr)


def emit_sweep(sweep: Any, args: argparse.Namespace, only_copy: bool = False) -> None:
    """Render a sweep (one row per point, or its curves as a PNG) as ``args.format`` asks, to the output or
    stdout; ``only_copy`` as :func:`emit` takes it."""
    from llmprof.report.sweep import FORMATS, RENDERERS, render
    from llmprof.runfile import write_atomic

    if args.format != "plot" and args.format not in FORMATS:
        raise UsageError(
            f"a sweep renders as {', '.join(FORMATS)} or plot, not {args.format}"
            " (report one point's run with --point)"
        )
    if args.output is None:
        RENDERERS[args.format](sweep, sys.stdout)
        return
    try:
        if args.format == "plot":
            from llmprof.report.plot import render_sweep

            write_plot(lambda png: render_sweep(sweep, png), args.output)
            return
        write_atomic(args.output, render(sweep, args.format))
    except OSError:
        if only_copy:  # the results are not lost with the file: the table, then the error
            RENDERERS["table"](sweep, sys.stdout)
        raise
    print(f"{args.format} written to {args.output}", file=sys.stderr)
