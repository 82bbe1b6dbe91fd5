"""Profile generate() on a model: TTFT, TPOT, latency, TPS and their breakdown over repeats.

With no --model, profiles the built-in demo model (built locally, no download).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from llmprof.cli import interrupts
from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.output import add_output_options, check_output_options, emit
from llmprof.cli.ranks import TP_ROOFLINE, check_ranks, ranks_joined
from llmprof.cli.workload import (
    add_step_capture_options,
    add_workload_options,
    after_repeats,
    close_run,
    failure,
    kernel_window,
    load_workload,
    progress,
    roofline,
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``run``."""
    add_workload_options(parser)
    add_step_capture_options(parser)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's forward")
    parser.add_argument(
        "--patch",
        metavar="MODULE:FUNCTION",
        help="call this function with the loaded model before profiling (install a kernel, ...)",
    )
    parser.add_argument(
        "--loop",
        metavar="MODULE:FUNCTION",
        help="profile your own decode loop instead of generate(): FUNCTION(model, inputs, recorder), inputs"
        " holding input_ids, attention_mask and max_new_tokens, recording one request with the llmprof.Recorder",
    )
    parser.add_argument(
        "--tp",
        action="store_true",
        help="under torchrun: shard the model over the job's ranks (tp_plan='auto'); every rank records its"
        " timeline, rank 0 gathers them into one run and alone prints and writes",
    )
    parser.add_argument(
        "--rank-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --tp: how long rank 0 waits for the other ranks' timelines (default: %(default)g)",
    )
    parser.add_argument("--json", metavar="FILE", help="save the run (every raw timeline) as JSON")
    add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    """Run the profile; returns the exit status (130 when interrupted, 1 when generate() failed)."""
    check_output_path(args.json, "--json")
    check_output_options(args)
    check_distinct([], {"--json": args.json, "--output": args.output})
    kernel_window(args)
    from llmprof.workloads.variants import load_function

    check_ranks(args)
    if args.patch:
        load_function(args.patch)  # a missing module or function fails before the model is loaded
    loop = load_function(args.loop, f"--loop {args.loop}") if args.loop else None
    workload = load_workload(args)
    if args.tp:
        with ranks_joined(args) as ranks:
            return _profile(workload, args, loop, ranks)
    return _profile(workload, args, loop, None)


def _profile(workload: Any, args: argparse.Namespace, loop: Any, ranks: Any) -> int:
    """Profile the loaded workload; with ``ranks`` (--tp), gather every rank's timeline on rank 0."""
    from llmprof.capture.environment import capture_environment
    from llmprof.runfile import Run
    from llmprof.workloads.variants import apply_patch, compile_forward

    model = workload.loaded.model
    if args.patch:
        apply_patch(model, args.patch)
    # after the patch, which may change the weights; before compiling
    shape_and_peaks = None if args.tp else roofline(model, workload.loaded.device, args)
    if args.tp:
        print(f"llmprof: no roofline under --tp: {TP_ROOFLINE}", file=sys.stderr)
    if args.compile:
        compile_forward(model)
    config = {**workload.config, "compile": args.compile, "patch": args.patch, "loop": args.loop}
    if ranks is not None:
        config.update(tp=True, world_size=ranks.info.world_size, dist_backend=ranks.info.backend)
    run = Run(config=config, environment=capture_environment(model), roofline=shape_and_peaks)
    recording, telemetry = _recording(model, workload, args, loop)
    status = 0
    with interrupts.stopping(), recording as (calls, one_call):
        try:
            total = None if args.warmup is None else args.warmup + args.repeats
            for i, record in enumerate(calls, 1):
                run.records.append(record)
                progress(i, total, record)
            # after the repeats, which they would perturb
            (run.kernels,) = after_repeats([("", one_call)], args, workload.loaded.device)
        except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - e.g. out of memory: keep what was measured
            status = 128 + interrupts.signal_number(exc) if isinstance(exc, KeyboardInterrupt) else 1
            print(failure(exc, len(run.measured), args.repeats, args), file=sys.stderr)
    quiet = ranks is not None and ranks.quiet  # a rank other than 0 shows and writes nothing
    if ranks is not None:
        run.ranks = ranks.gathered(run.records)
    with interrupts.deferred() as caught:  # a signal now waits: the save and the table are not cut
        saved = close_run(run, telemetry(), status, args, path=None if quiet else args.json)
        if run.measured and not quiet:
            emit(run, args, only_copy=not (args.json and saved))
    return status or (128 + caught[0] if caught else 0) or (0 if saved else 1)


def _recording(model: Any, workload: Any, args: argparse.Namespace, loop: Any) -> tuple[Any, Any]:
    """The recorded calls and one more call (a context that yields the calls as they come, and a function
    making one unmeasured call), and the run's telemetry: the generate() hooks, or the user's loop with a
    Recorder."""
    from llmprof.capture.profiler import Profiler, nvml_devices
    from llmprof.workloads.runner import profiled_call, recorded_call, repeat_generate, repeat_loop

    if loop is None:
        profiler = Profiler(model, telemetry=not args.no_telemetry, sample_interval=args.sample_interval)

        @contextlib.contextmanager
        def hooked() -> Iterator[Any]:
            with profiler:
                kwargs = workload.generate_kwargs
                yield (
                    repeat_generate(profiler, workload.inputs, args.repeats, args.warmup, **kwargs),
                    lambda: profiled_call(profiler, workload.inputs, True, **kwargs),
                )

        return hooked(), lambda: profiler.telemetry
    from llmprof.capture.recorder import Recorder
    from llmprof.capture.sampling import make_sampler

    recorder = Recorder.for_model(model)
    sampler = None if args.no_telemetry else make_sampler(nvml_devices(model), args.sample_interval)
    inputs = {**workload.inputs, "max_new_tokens": args.max_new_tokens}

    def bracketed(model: Any, inputs: dict[str, Any], recorder: Any) -> Any:
        """The loop, its call bracketed as a request for the sampler (full resolution inside)."""
        begin = sampler.begin_request()
        try:
            return loop(model, inputs, recorder)
        finally:
            sampler.end_request(begin, 0.0)  # figures of no record: the loop's own request is what counts

    @contextlib.contextmanager
    def looped() -> Iterator[Any]:
        if sampler is not None:
            sampler.start()
        try:
            call = loop if sampler is None else bracketed
            yield (
                repeat_loop(call, recorder, model, inputs, args.repeats, args.warmup),
                lambda: recorded_call(call, recorder, model, inputs, True),
            )
        finally:
            if sampler is not None:
                sampler.stop()

    return looped(), lambda: None if sampler is None else sampler.snapshot()
