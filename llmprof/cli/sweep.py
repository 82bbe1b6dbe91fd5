"""Sweep a grid of workloads on one loaded model: --batch-size, --prompt-len and --max-new-tokens take lists
and ranges (llama-bench style: 1,4,16 or 1-64*2); every point gets the repeats, warm-ups and statistics of
`run`. A point that fails is recorded with its reason and the sweep goes on; after an out-of-memory error the
larger batches of the same prompt and generation are skipped; the sweep file is saved after every point, and
--resume continues it."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from llmprof.cli import interrupts
from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.output import emit_sweep
from llmprof.cli.ranks import refuse_under_torchrun
from llmprof.cli.workload import (
    DEFAULT_PROMPT_LEN,
    add_workload_options,
    close_run,
    line_break,
    roofline,
    workload_for,
)
from llmprof.errors import CaptureError, UsageError

AXES = ("batch_size", "prompt_len", "depth", "max_new_tokens")  # the slowest first: larger batches come later
VARIANT_KEYS = ("attn", "compile", "dtype", "patch")  # kernel-swap axes, slower still: one variant at a time
OPTIONS = {
    "batch_size": "--batch-size",
    "prompt_len": "--prompt-len",
    "depth": "--depth",
    "max_new_tokens": "--max-new-tokens",
}
SHARED = ("model", "device", "dtype", "attn_implementation", "prompt", "repeats", "warmup", "do_sample")
SHARED += ("ignore_eos", "seed")  # what every point of a sweep (and of the sweep it resumes) has in common


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
    parser.add_argument(
        "--format",
        choices=(*FORMATS, "plot"),
        default="table",
        help="the table printed at the end; plot writes the curves as a PNG (needs -o)",
    )
    parser.add_argument("-o", "--output", metavar="PATH", help="write that table here instead of stdout")


def sweep_axes(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The grid's axes from the command line (a --prompt text is no axis); raises UsageError."""
    from llmprof.analysis.grid import parse_values

    axes = variant_axes(args.variant)
    for name in AXES:
        if (name == "prompt_len" and args.prompt is not None) or (name == "depth" and args.depth is None):
            continue  # a prompt text is no axis; nor is a depth not asked for
        value = getattr(args, name)
        minimum = 0 if name == "depth" else 1
        axes[name] = parse_values(str(DEFAULT_PROMPT_LEN if value is None else value), OPTIONS[name], minimum)
    return axes


def variant_axes(options: list[str]) -> dict[str, list[str]]:
    """The kernel-swap axes of ``--variant KEY=V1,V2`` options, each value checked; raises UsageError."""
    from llmprof.workloads.variants import Variant

    axes: dict[str, list[str]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        if not sep or key not in VARIANT_KEYS or not values:
            raise UsageError(f"--variant {option!r}: KEY=V1,V2 with KEY in {', '.join(VARIANT_KEYS)}")
        if key in axes:
            raise UsageError(f"--variant {key} is given twice: list its values in one option")
        axes[key] = list(dict.fromkeys(v.strip() for v in values.split(",")))
        for value in axes[key]:
            Variant.parse("sweep", [f"{key}={value}"])  # a bad value fails now, before the model loads
    return axes


def main(args: argparse.Namespace) -> int:
    """Measure every point of the grid not measured yet; returns the exit status (130 when interrupted)."""
    refuse_under_torchrun("sweep")
    from llmprof.analysis.grid import point_key, points
    from llmprof.capture.environment import capture_environment
    from llmprof.sweepfile import FAILED, OK, Sweep, load_sweep
    from llmprof.workloads.models import load_model

    path = args.resume or args.json
    if args.resume and args.json and os.path.realpath(args.resume) != os.path.realpath(args.json):
        raise UsageError("--resume saves to the file it continues: no --json with it")
    check_output_path(path, "--json")
    check_output_path(args.output, "--output")
    check_distinct([], {"--json": path, "--output": args.output})
    if args.format == "plot":
        if args.output is None:
            raise UsageError("--format plot writes a PNG: give it a file with -o/--output")
        from llmprof.report.plot import check_available

        check_available()
    axes = sweep_axes(args)
    shared = {name: getattr(args, name) for name in SHARED}
    sweep = Sweep(axes, {"request": shared, "model": args.model, "repeats": args.repeats})
    if args.resume:
        sweep = _resumed(load_sweep(args.resume), axes, shared)
    done = {p.key for p in sweep.measured()}
    todo = [params for params in points(axes) if point_key(params) not in done]
    print(f"llmprof: sweep of {len(todo)} points ({len(done)} already measured)", file=sys.stderr)
    loaded = load_model(
        args.model, args.device, args.dtype, args.attn_implementation, device_map=args.device_map
    )
    sweep.config.update(device=str(loaded.device), dtype=str(loaded.dtype).removeprefix("torch."))
    context = {
        "loaded": loaded,
        "environment": capture_environment(loaded.model),
        "variants": _variants(loaded, axes, args),
    }
    status = 0
    out_of_memory: dict[tuple[Any, ...], int] = {}  # (the point less its batch) -> the batch that ran out
    refused = _refused(todo, loaded, args)
    timed = 0  # the points that did their work (measured, or failed on the way): what the time went to
    started = time.monotonic()
    done = 0  # the points recorded (and saved)
    with interrupts.stopping(), contextlib.ExitStack() as attached:
        try:
            for profiler in {id(v.profiler): v.profiler for v in context["variants"].values()}.values():
                attached.enter_context(profiler)
            for n, params in enumerate(todo, 1):
                point = _point(params, context, args, out_of_memory)
                sweep.record(point)
                done = n
                if (
                    path and sweep.measured()
                ):  # a sweep that measured nothing leaves an existing file as it was
                    _save(sweep, path)
                timed += point.status in (OK, FAILED)
                to_measure = sum(
                    point_key(p) not in refused and _skipped(p, out_of_memory) is None for p in todo[n:]
                )
                _progress(n, len(todo), point, time.monotonic() - started, timed, to_measure)
        except KeyboardInterrupt as exc:  # the point under way is dropped; every recorded one is kept
            status = 128 + interrupts.signal_number(exc)
            print(f"{line_break()}llmprof: interrupted: {done} of {len(todo)} points done", file=sys.stderr)
    with interrupts.deferred() as caught:
        sweep.interrupted = status != 0
        saved = _save(sweep, path) if path and sweep.measured() else True
        emit_sweep(sweep, args, only_copy=not (path and saved))
        if not sweep.measured():
            kept = f": {path} is left as it was" if path else ""
            print(
                f"llmprof: error: nothing was measured (every point refused or failed){kept}", file=sys.stderr
            )
    nothing = 0 if sweep.measured() else 1
    return status or (128 + caught[0] if caught else 0) or (0 if saved else 1) or nothing


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


@dataclass
class SweptVariant:
    """One kernel swap of the sweep: the prepared variant (its model), the profiler attached to that model,
    and its roofline inputs (a dtype changes the bytes)."""

    prepared: Any
    profiler: Any
    roofline: dict[str, Any] | None


def _variant_key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((key, params[key]) for key in VARIANT_KEYS if key in params)


def _variants(loaded: Any, axes: dict[str, list[Any]], args: argparse.Namespace) -> dict[Any, SweptVariant]:
    """Every combination of the kernel-swap axes, prepared on the loaded model (one without them: the model as
    loaded), by its key; raises UsageError when the copies they need cannot fit or a variant cannot be built."""
    from llmprof.analysis.grid import points
    from llmprof.capture.profiler import Profiler
    from llmprof.workloads.memory import check_copies
    from llmprof.workloads.models import DTYPES
    from llmprof.workloads.variants import Variant, own_copies, prepare

    combos = points({key: axes[key] for key in VARIANT_KEYS if key in axes})
    variants = [Variant.parse("sweep", [f"{k}={v}" for k, v in combo.items()]) for combo in combos]
    model = loaded.model
    if not args.no_memory_check:
        copies = {v.label(): DTYPES[v.dtype] if v.dtype else model.dtype for v in own_copies(variants)}
        check_copies(model, loaded.device, copies)
    prepared = prepare(model, variants)
    profilers: dict[int, Any] = {}
    out = {}
    for combo, p in zip(combos, prepared):
        p.activate()  # the roofline reads the variant's own model
        profiler = profilers.setdefault(
            id(p.model),
            Profiler(p.model, telemetry=not args.no_telemetry, sample_interval=args.sample_interval),
        )
        out[_variant_key(combo)] = SweptVariant(p, profiler, roofline(p.model, loaded.device, args))
    return out


def _point_args(args: argparse.Namespace, params: dict[str, Any]) -> argparse.Namespace:
    """The command line's options with the point's axes set."""
    return argparse.Namespace(**{**vars(args), **{k: v for k, v in params.items() if k in AXES}})


def _rest(params: dict[str, Any]) -> tuple[Any, ...]:
    """The point less its batch: the points that differ by their batch alone share it."""
    return tuple(v for k, v in sorted(params.items()) if k != "batch_size")


def _skipped(params: dict[str, Any], out_of_memory: dict[tuple[Any, ...], int]) -> str | None:
    """Why the point is skipped (a smaller batch of the same rest ran out of memory), or None."""
    smallest = out_of_memory.get(_rest(params))
    if smallest is None or params["batch_size"] < smallest:
        return None
    return f"batch {smallest} ran out of memory at the same prompt and generation"


def _refused(todo: list[dict[str, Any]], loaded: Any, args: argparse.Namespace) -> set[str]:
    """The keys of the points that the context check or the memory estimate refuses now, before any work (as
    each point's own check will when it comes): the time left is that of the other points."""
    from llmprof.analysis.grid import point_key

    refused = set()
    for params in todo:
        try:
            workload_for(loaded, _point_args(args, params))
        except UsageError:
            refused.add(point_key(params))
    return refused


def _point(
    params: dict[str, Any],
    context: dict[str, Any],
    args: argparse.Namespace,
    out_of_memory: dict[tuple[Any, ...], int],
) -> Any:
    """Measure one point (its run, or why it has none)."""
    from llmprof.runfile import Run
    from llmprof.sweepfile import FAILED, REFUSED, SKIPPED, SweepPoint
    from llmprof.workloads.runner import depth_cache, repeat_generate

    skipped = _skipped(params, out_of_memory)
    if skipped is not None:
        return SweepPoint(params, SKIPPED, skipped)
    point_args = _point_args(args, params)
    depth = params.get("depth", 0)
    variant = context["variants"][_variant_key(params)]
    variant.prepared.activate()
    try:
        workload = workload_for(context["loaded"], point_args)
        inputs, cache = workload.inputs, None
        if depth:
            inputs, cache = depth_cache(variant.prepared.model, inputs, depth, args.seed)
    except (
        UsageError,
        CaptureError,
    ) as exc:  # the memory estimate, the model's context, a model without cache
        return SweepPoint(params, REFUSED, str(exc))
    run = Run(
        config={
            **workload.config,
            "depth": depth,
            "variant": variant.prepared.variant.describe(),
            "sweep_point": dict(params),
        },
        environment=context["environment"],
        roofline=variant.roofline,
    )
    started = time.monotonic_ns()
    try:
        for record in repeat_generate(
            variant.profiler, inputs, args.repeats, args.warmup, **workload.generate_kwargs
        ):
            run.records.append(record)
            if cache is not None and cache.get_seq_length() > depth:  # the next call starts at the same depth
                cache.crop(depth - cache.get_seq_length())  # (a negative length: drop that many tokens)
    except Exception as exc:  # noqa: BLE001 - a failed point is recorded, and the sweep goes on
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        if _is_out_of_memory(exc):
            rest = _rest(params)
            out_of_memory[rest] = min(params["batch_size"], out_of_memory.get(rest, params["batch_size"]))
        return SweepPoint(params, FAILED, reason)
    close_run(run, _telemetry(variant.profiler, started), 0, point_args)
    return SweepPoint(params, run=run)


def _telemetry(profiler: Any, started_ns: int) -> dict[str, Any] | None:
    """The point's telemetry: the samples the sweep's sampler took since the point started (None when off)."""
    from llmprof.analysis.telemetry import telemetry_window

    snapshot = profiler.telemetry
    return None if snapshot is None else telemetry_window(snapshot, started_ns, time.monotonic_ns())


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
