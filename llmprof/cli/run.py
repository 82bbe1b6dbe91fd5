"""Profile generate() on a model: TTFT, TPOT, latency, TPS and their breakdown over repeats.

With no --model, profiles the built-in demo model (built locally, no download).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from llmprof.cli import interrupts
from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.measure import Arm, exit_status, measure, save
from llmprof.cli.output import Output, add_output_options, emit, output_of
from llmprof.cli.ranks import TP_ROOFLINE, check_ranks, ranks_joined
from llmprof.cli.step_capture import StepCapture, add_step_capture_options
from llmprof.cli.workload import WorkloadOptions, add_workload_options, parse_workload, refuse_engine_options


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
    from llmprof.workloads.engines import load
    from llmprof.workloads.inputs import build_inputs
    from llmprof.workloads.variants import load_function

    check_output_path(args.json, "--json")
    output = output_of(args)
    check_distinct([], {"--json": args.json, "--output": output.path})
    capture = StepCapture(
        args.kernels, args.kernel_calls, args.kernels_steps, args.nvtx, args.cuda_profiler_range
    )
    check_ranks(args.tp, args.rank_timeout)
    if args.patch:
        load_function(args.patch)  # a missing module or function fails before the model is loaded
    loop = load_function(args.loop, f"--loop {args.loop}") if args.loop else None
    options = parse_workload(args, compile=args.compile, patch=args.patch, loop=args.loop, tp=args.tp)
    if options.spec.engine == "hf":
        refuse_engine_options(options.spec)
    else:
        return _profile_engine(options, capture, output, args.json, args.debug)
    loaded = load(options.spec)
    job = _Job(
        options, capture, output, args.json, loaded, build_inputs(loaded, options.spec), loop, args.debug
    )
    if args.tp:
        with ranks_joined(args.rank_timeout) as ranks:
            return _profile(job, ranks)
    return _profile(job, None)


@dataclass
class _Job:
    """What ``run`` measures and how, parsed, with the model loaded and its inputs built."""

    options: WorkloadOptions
    capture: StepCapture
    output: Output
    json: str | None
    loaded: Any
    inputs: Any
    loop: Any
    debug: bool


def _profile(job: _Job, ranks: Any) -> int:
    """Profile the loaded workload; with ``ranks`` (--tp), gather every rank's timeline on rank 0."""
    from llmprof.capture.environment import capture_environment
    from llmprof.runfile import Run
    from llmprof.workloads.engines import attached, engines_for
    from llmprof.workloads.sizing import roofline_inputs
    from llmprof.workloads.variants import apply_patch, compile_forward

    spec, model = job.options.spec, job.loaded.model
    if spec.patch:
        apply_patch(model, spec.patch)
    # after the patch, which may change the weights; before compiling
    roofline = None if spec.tp else roofline_inputs(model, job.loaded.device, job.options.peaks)
    if spec.tp:
        print(f"llmprof: no roofline under --tp: {TP_ROOFLINE}", file=sys.stderr)
    if spec.compile:
        compile_forward(model)
    described = {} if ranks is None else {"ranks": (ranks.info.world_size, ranks.info.backend)}
    (engine,) = engines_for([(model, job.loop)], spec, job.options.telemetry)
    run = Run(config={}, environment=capture_environment(model), roofline=roofline)
    arm = Arm("", spec, engine, job.inputs, run, job.inputs.loaded, described)
    failing = "the loop" if spec.loop else "generate()"
    with attached([engine]):
        status = measure([arm], job.capture, job.loaded.device, failing, job.debug)
    quiet = ranks is not None and ranks.quiet  # a rank other than 0 shows and writes nothing
    if ranks is not None:
        run.ranks = ranks.gathered(run.records)
    return _finish(arm, status, None if quiet else job.json, None if quiet else job.output)


def _profile_engine(
    options: WorkloadOptions, capture: StepCapture, output: Output, json: str | None, debug: bool
) -> int:
    """Profile vLLM's engine in this process: a request per prompt of the batch, the engine's steps."""
    from llmprof.errors import UsageError
    from llmprof.runfile import Run
    from llmprof.workloads import vllm_engine
    from llmprof.workloads.engines import attached

    if capture.nvtx or capture.cuda_profiler_range:
        raise UsageError("--nvtx and --cuda-profiler-range with --engine vllm: not yet (--kernels N is)")
    spec = options.spec
    loaded = vllm_engine.load(spec)
    inputs = vllm_engine.build_inputs(loaded, spec)
    engine = vllm_engine.VllmGenerate(loaded, options.telemetry, spec)
    print(f"llmprof: no roofline with --engine vllm: {vllm_engine.NO_ROOFLINE}", file=sys.stderr)
    run = Run(config={}, environment=vllm_engine.environment())
    arm = Arm("", spec, engine, inputs, run, inputs.loaded)
    with attached([engine]):
        status = measure([arm], capture, loaded.device, "llm.generate()", debug)
    for dropped in engine.profiler.dropped:
        print(f"llmprof: warning: {dropped}", file=sys.stderr)
    return _finish(arm, status, json, output)


def _finish(arm: Arm, status: int, json: str | None, output: Output | None) -> int:
    """Close the run, save it to ``json`` and show it on ``output`` (None: neither, a quiet rank), the signals
    deferred; the exit status."""
    run = arm.run
    with interrupts.deferred() as caught:  # a signal now waits: the save and the table are not cut
        arm.close(status)
        saved = save(run, json)
        if run.measured and output is not None:
            emit(run, output, only_copy=not (json and saved))
    return exit_status(status, caught, saved)
