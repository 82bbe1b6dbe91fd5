"""Sweep a grid of workloads on one loaded model (or one vLLM engine, --engine vllm): --batch-size,
--prompt-len and --max-new-tokens take lists and ranges (llama-bench style: 1,4,16 or 1-64*2); every point gets
the repeats, warm-ups and statistics of `run`. A point that fails is recorded with its reason and the sweep goes
on; after an out-of-memory error the larger batches of the same prompt and generation are skipped; the sweep
file is saved after every point, and --resume continues it."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from llmprof.cli import interrupts
from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.measure import calls, exit_status, line_break
from llmprof.cli.output import Output, add_output_options, emit_sweep, output_of
from llmprof.cli.ranks import refuse_under_torchrun
from llmprof.cli.sweep_grid import AXES, Grid, load_grid
from llmprof.cli.workload import (
    DEFAULT_PROMPT_LEN,
    WorkloadOptions,
    add_workload_options,
    parse_workload,
    refuse_engine_options,
)
from llmprof.errors import CaptureError, UsageError, one_line

OPTIONS = {
    "batch_size": "--batch-size",
    "prompt_len": "--prompt-len",
    "depth": "--depth",
    "max_new_tokens": "--max-new-tokens",
}


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``sweep``."""
    from llmprof.report.sweep import FORMATS

    add_workload_options(parser, axes=True)
    parser.add_argument(
        "--depth",
        metavar="TOKENS",
        help="context already in the KV cache before the prompt (llama-bench -d): prefilled once per point, then"
        " TTFT is the prompt's on top of it and TPOT is at that depth (a list or range; default: no depth axis)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a kernel swap as an axis, KEY in attn, compile, dtype, patch (as `ab` takes them), e.g."
        " attn=eager,sdpa or compile=off,on or patch=my_kernels:install (repeatable)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="save the sweep here, after every point (one run per point)"
    )
    parser.add_argument(
        "--resume",
        metavar="FILE",
        help="continue the sweep saved in FILE, and save to it: only the points it has not measured run",
    )
    add_output_options(
        parser,
        (*FORMATS, "plot"),
        "the table printed at the end; plot writes the curves as a PNG (needs -o)",
        "write that table here instead of stdout",
        run_rows=False,
    )


def sweep_axes(given: dict[str, str | None], prompt: str | None, variants: list[str]) -> dict[str, list[Any]]:
    """The grid's axes from the command line: ``given`` the text of each of AXES' options (a --prompt text is
    no axis, nor a depth not asked for), ``variants`` the --variant options; raises UsageError."""
    from llmprof.analysis.grid import parse_values

    axes = variant_axes(variants)
    for name in AXES:
        if (name == "prompt_len" and prompt is not None) or (name == "depth" and given[name] is None):
            continue
        value = given[name]
        minimum = 0 if name == "depth" else 1
        axes[name] = parse_values(str(DEFAULT_PROMPT_LEN if value is None else value), OPTIONS[name], minimum)
    return axes


def variant_axes(options: list[str]) -> dict[str, list[str]]:
    """The kernel-swap axes of ``--variant KEY=V1,V2`` options, each value checked; raises UsageError."""
    from llmprof.workloads.variants import SWEPT, Variant

    axes: dict[str, list[str]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        if not sep or key not in SWEPT or not values:
            raise UsageError(f"--variant {option!r}: KEY=V1,V2 with KEY in {', '.join(SWEPT)}")
        if key in axes:
            raise UsageError(f"--variant {key} is given twice: list its values in one option")
        axes[key] = list(dict.fromkeys(v.strip() for v in values.split(",")))
        for value in axes[key]:
            Variant.parse("sweep", [f"{key}={value}"])  # a bad value fails now, before the model loads
    return axes


def main(args: argparse.Namespace) -> int:
    """Measure every point of the grid not measured yet; returns the exit status (130 when interrupted)."""
    refuse_under_torchrun("sweep")
    path = args.resume or args.json
    if args.resume and args.json and os.path.realpath(args.resume) != os.path.realpath(args.json):
        raise UsageError("--resume saves to the file it continues: no --json with it")
    check_output_path(path, "--json")
    output = output_of(args)
    check_distinct([], {"--json": path, "--output": output.path})
    given = {"batch_size": args.batch_size, "prompt_len": args.prompt_len, "depth": args.depth}
    _refuse_for_engine(args.engine, {"--depth": args.depth is not None, "--variant": bool(args.variant)})
    axes = sweep_axes({**given, "max_new_tokens": args.max_new_tokens}, args.prompt, args.variant)
    first = {name: values[0] for name, values in axes.items() if name in AXES and name != "depth"}
    options = parse_workload(args, **first)
    if options.spec.engine == "hf":
        refuse_engine_options(options.spec)
    sweep = _sweep(axes, options.spec, args.resume)
    status = _measure(sweep, axes, options, path)
    return _finish(sweep, status, path, output)


def _refuse_for_engine(engine: str, given: dict[str, bool]) -> None:
    """One line for the options given (by name: whether given) that a sweep of vLLM's engine does not take."""
    refused = [option for option, present in given.items() if present]
    if engine == "vllm" and refused:
        raise UsageError(f"{' and '.join(refused)} with sweep --engine vllm: not yet")


def _sweep(axes: dict[str, list[Any]], spec: Any, resume: str | None) -> Any:
    """The sweep to measure: a new one, or the one saved in ``resume`` with these axes added."""
    from llmprof.sweepfile import Sweep, load_sweep

    shared = spec.shared()
    if resume:
        return _resumed(load_sweep(resume), axes, shared)
    return Sweep(axes, {"request": shared, "model": spec.model, "repeats": spec.repeats})


def _measure(sweep: Any, axes: dict[str, list[Any]], options: WorkloadOptions, path: str | None) -> int:
    """Measure the points not measured yet, saving the sweep after each; the exit status (128 + the signal's
    number when interrupted)."""
    from llmprof.analysis.grid import point_key, points
    from llmprof.sweepfile import FAILED, OK
    from llmprof.workloads.engines import attached

    done = {p.key for p in sweep.measured()}
    todo = [params for params in points(axes) if point_key(params) not in done]
    print(f"llmprof: sweep of {len(todo)} points ({len(done)} already measured)", file=sys.stderr)
    grid = load_grid(axes, options)
    sweep.config.update(device=grid.device, dtype=grid.dtype)
    refused = _refused(todo, grid)
    timed = 0  # the points that did their work (measured, or failed on the way): what the time went to
    started = time.monotonic()
    recorded = 0  # the points recorded (and saved)
    with interrupts.stopping(), attached(grid.engines()):
        try:
            for n, params in enumerate(todo, 1):
                point = _point(params, grid)
                sweep.record(point)
                recorded = n
                if (
                    path and sweep.measured()
                ):  # a sweep that measured nothing leaves an existing file as it was
                    _save(sweep, path)
                timed += point.status in (OK, FAILED)
                to_measure = sum(point_key(p) not in refused and grid.skipped(p) is None for p in todo[n:])
                _progress(n, len(todo), point, time.monotonic() - started, timed, to_measure)
        except KeyboardInterrupt as exc:  # the point under way is dropped; every recorded one is kept
            print(
                f"{line_break()}llmprof: interrupted: {recorded} of {len(todo)} points done", file=sys.stderr
            )
            return 128 + interrupts.signal_number(exc)
    return 0


def _finish(sweep: Any, status: int, path: str | None, output: Output) -> int:
    """Save the sweep and show it, with the signals deferred; the exit status."""
    with interrupts.deferred() as caught:
        sweep.interrupted = status != 0
        saved = _save(sweep, path) if path and sweep.measured() else True
        emit_sweep(sweep, output, only_copy=not (path and saved))
        if not sweep.measured():
            kept = f": {path} is left as it was" if path else ""
            print(
                f"llmprof: error: nothing was measured (every point refused or failed){kept}", file=sys.stderr
            )
    nothing = 0 if sweep.measured() else 1
    return exit_status(status, caught, saved) or nothing


def _resumed(sweep: Any, axes: dict[str, list[Any]], shared: dict[str, Any]) -> Any:
    """The sweep to continue, with the command line's axes; raises UsageError when it measured something
    else (another model, other repeats, other axes)."""
    saved = sweep.config.get("request", {})
    differ = [f"{k} {saved.get(k)!r} vs {v!r}" for k, v in shared.items() if saved.get(k) != v]
    if set(sweep.axes) != set(axes):
        differ.append(f"axes {', '.join(sweep.axes)} vs {', '.join(axes)}")
    if differ:
        raise UsageError(f"--resume: the saved sweep differs from this one: {'; '.join(differ)}")
    sweep.axes = {name: list(dict.fromkeys(sweep.axes[name] + axes[name])) for name in axes}
    return sweep


def _refused(todo: list[dict[str, Any]], grid: Grid) -> set[str]:
    """The keys of the points that the context check or the memory estimate refuses now, before any work (as
    each point's own check will when it comes): the time left is that of the other points."""
    from llmprof.analysis.grid import point_key

    refused = set()
    for params in todo:
        try:
            grid.inputs(params)
        except UsageError:
            refused.add(point_key(params))
    return refused


def _point(params: dict[str, Any], grid: Grid) -> Any:
    """Measure one point (its run, or why it has none)."""
    from llmprof.sweepfile import REFUSED, SKIPPED, SweepPoint

    skipped = grid.skipped(params)
    if skipped is not None:
        return SweepPoint(params, SKIPPED, skipped)
    try:
        arm = grid.arm(params)  # a depth's prefill runs the model here
    except (
        UsageError,
        CaptureError,
    ) as exc:  # the memory estimate, the model's context, a model without cache
        return SweepPoint(params, REFUSED, str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory prefilling the depth: as a failed call
        return _failed(params, exc, grid)
    started = time.monotonic_ns()
    try:
        for _ in calls([arm], arm.spec.repeats, arm.spec.warmup):
            pass
    except Exception as exc:  # noqa: BLE001 - a failed point is recorded, and the sweep goes on
        return _failed(params, exc, grid)
    grid.close(arm, started)
    return SweepPoint(params, run=arm.run)


def _failed(params: dict[str, Any], exc: Exception, grid: Grid) -> Any:
    """A point that failed (out of memory: the larger batches of its rest are skipped after it)."""
    from llmprof.sweepfile import FAILED, SweepPoint

    if _is_out_of_memory(exc):
        grid.ran_out(params)
    return SweepPoint(params, FAILED, one_line(exc))


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _progress(done: int, total: int, point: Any, elapsed: float, timed: int, to_measure: int) -> None:
    """Say how the point went and what is left: ``to_measure`` of the points left will do their work (the
    others are refused or skipped at once), each in the mean time of the ``timed`` points so far."""
    from llmprof.report.sweep import point_medians

    tpot = point_medians(point).get("tpot")
    what = f"TPOT {tpot * 1e3:.3f} ms" if tpot is not None else (point.reason or point.status)
    left = [f"{total - done} left"]
    if to_measure < total - done:
        left.append(f"{to_measure or 'none'} to measure")
    if to_measure and timed:
        left.append(f"about {elapsed / timed * to_measure:.0f} s more")
    print(
        f"llmprof: [{done}/{total}] {point.label}: {point.status}, {what} ({', '.join(left)})",
        file=sys.stderr,
    )


def _save(sweep: Any, path: str) -> bool:
    from llmprof.sweepfile import save_sweep

    try:
        save_sweep(sweep, path)
    except OSError as exc:
        print(
            f"llmprof: error: the sweep could not be saved to {path}: {exc.strerror or exc}", file=sys.stderr
        )
        return False
    return True
