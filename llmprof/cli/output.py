"""The output options of every subcommand (--format, -o/--output, and for a run --per-step and --kernels rows),
declared once, and the one writer: to stdout, or to a file atomically, saying so (docs/architecture.md, "Where each thing lives")."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from llmprof.cli.common import check_output_path
from llmprof.cli.progress import Stages
from llmprof.errors import UsageError
from llmprof.report import BINARY_FORMATS, FORMATS

RUN_FORMATS = FORMATS
RUN_HELP = (
    "output format (default {default}); plot writes a PNG, perfetto a binary Perfetto trace (trace: the same as"
    " JSON)"
)
OUTPUT_HELP = "write the output here (atomically) instead of stdout"


@dataclass(frozen=True)
class Output:
    """Where and how to write: a format, a path (None: stdout), and for a run's CSV one row per decode step
    (``per_step``) or per captured step and operator (``kernel_rows``)."""

    format: str = "table"
    path: str | None = None
    per_step: bool = False
    kernel_rows: bool = False


def add_output_options(
    parser: argparse.ArgumentParser,
    formats: Sequence[str] = RUN_FORMATS,
    format_help: str = RUN_HELP,
    output_help: str = OUTPUT_HELP,
    run_rows: bool = True,
    kernel_rows: bool = False,
) -> None:
    """Declare --format (one of ``formats``, default table) and -o/--output; with ``run_rows`` --per-step, with
    ``kernel_rows`` --kernels (CSV rows per captured step and operator/kernel)."""
    parser.add_argument(
        "--format", choices=formats, default="table", help=format_help.format(default="table")
    )
    parser.add_argument("-o", "--output", metavar="PATH", help=output_help)
    parser.set_defaults(per_step=False, kernel_rows=False)  # the rows of a run's CSV, where not declared
    if run_rows:
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


def output_of(args: argparse.Namespace) -> Output:
    """The output options parsed, checked before any work: the path can be written, a binary format has one,
    the rows asked go with the format, the plot's or trace's library can be imported."""
    output = Output(args.format, args.output, args.per_step, args.kernel_rows)
    check_output_path(output.path, "--output")
    if output.format in BINARY_FORMATS and output.path is None:
        raise UsageError(
            f"--format {output.format} writes {BINARY_FORMATS[output.format]}: give it a file with -o/--output"
        )
    if output.per_step and output.format != "csv":
        raise UsageError("--per-step goes with --format csv")
    if output.kernel_rows and (output.format != "csv" or output.per_step):
        raise UsageError("--kernels goes with --format csv (and not with --per-step)")
    if output.format == "plot":
        from llmprof.report.plot import check_available

        check_available()
    if output.format == "perfetto":
        from llmprof.report.perfetto_trace import check_available as perfetto_available

        perfetto_available()
    return output


def write(
    output: Output,
    to_stdout: Callable[[], None],
    data: Callable[[], str | bytes],
    written: str,
    fallback: Callable[[], None] | None = None,
    stages: Stages | None = None,
) -> None:
    """Write to the output: ``to_stdout()`` without a path, else ``data()`` to the path atomically, saying
    ``"{written} written to PATH"``. ``fallback``: shown on stdout before the error when the file cannot be
    written (the output was the results' only copy). ``stages``: the progress bar to step through rendering and
    writing (ended before anything is written to stdout)."""
    from llmprof.runfile import write_atomic

    if output.path is None:
        if stages is not None:
            stages.close()
        to_stdout()
        return
    try:
        if stages is not None:
            stages.step(f"rendering {output.format}")
        payload = data()
        if stages is not None:
            stages.step(f"writing {output.path}")
        write_atomic(output.path, payload)
    except OSError:
        if fallback is not None:  # the results are not lost with the file: the table, then the error
            fallback()
        raise
    finally:
        if stages is not None:
            stages.close()
    print(f"{written} written to {output.path}", file=sys.stderr)


def png(draw: Callable[[IO[bytes]], None]) -> bytes:
    """A PNG drawn into memory by ``draw``."""
    out = io.BytesIO()
    draw(out)
    return out.getvalue()


def emit(run: Any, output: Output, stages: Stages | None = None, only_copy: bool = False) -> None:
    """Render ``run`` as ``output`` asks, to its path or stdout (the table with its colours); ``only_copy``: the
    output is the run's only copy (no run file kept it), so when it cannot be written (a full disk) the table is
    shown on stdout before the error is raised."""
    from llmprof.report import render, renderer

    rows = {"per_step": output.per_step, "kernels": output.kernel_rows}
    write(
        output,
        lambda: renderer(output.format, **rows)(run, sys.stdout),
        lambda: render(run, output.format, **rows),
        output.format,
        (lambda: renderer("table")(run, sys.stdout)) if only_copy else None,
        stages,
    )


def emit_sweep(sweep: Any, output: Output, only_copy: bool = False) -> None:
    """Render a sweep (one row per point, or its curves as a PNG) as ``output`` asks, to its path or stdout;
    ``only_copy`` as :func:`emit` takes it."""
    from llmprof.report.sweep import FORMATS as SWEEP_FORMATS
    from llmprof.report.sweep import RENDERERS, render

    if output.format != "plot" and output.format not in SWEEP_FORMATS:
        raise UsageError(
            f"a sweep renders as {', '.join(SWEEP_FORMATS)} or plot, not {output.format}"
            " (report one point's run with --point)"
        )

    def data() -> str | bytes:
        if output.format == "plot":
            from llmprof.report.plot import render_sweep

            return png(lambda out: render_sweep(sweep, out))
        return render(sweep, output.format)

    fallback = (lambda: RENDERERS["table"](sweep, sys.stdout)) if only_copy else None
    write(output, lambda: RENDERERS[output.format](sweep, sys.stdout), data, output.format, fallback)
