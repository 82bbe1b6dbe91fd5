"""What ``run``, ``ab`` and ``sweep`` share: the options that define a workload (model, prompt, tokens,
repeats, device, ...), parsed once into a :class:`~llmprof.workloads.spec.WorkloadSpec` and the options of its
telemetry and roofline."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmprof.cli.common import non_negative_int, positive_int, rate, seed
from llmprof.workloads.spec import DEFAULT_PROMPT_LEN, ENGINES, WorkloadSpec

if TYPE_CHECKING:  # the torch-free commands (report, compare) import the CLI without torch
    from llmprof.workloads.engines import TelemetryOptions
    from llmprof.workloads.sizing import PeakOptions


def sample_interval(text: str) -> float:
    """argparse type: a telemetry sampling interval in seconds, within the bounds the sampler takes."""
    from llmprof.capture.sampling.base import checked_interval

    try:
        return checked_interval(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc) if "interval" in str(exc) else f"not a number: {text!r}"
        ) from None


def engine_argument(text: str) -> tuple[str, Any]:
    """argparse type: ``KEY=VALUE`` of --engine-arg."""
    from llmprof.workloads.spec import engine_argument as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def request_rate(text: str) -> float:
    """argparse type: requests per second, a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"must be a number of requests per second > 0, got {text!r}")
    return value


def warmup_count(text: str) -> int | None:
    """argparse type: a number of warm-up calls >= 0, or ``auto`` (None: until the latencies are steady)."""
    return None if text == "auto" else non_negative_int(text)


def add_workload_options(parser: argparse.ArgumentParser, axes: bool = False) -> None:
    """Declare the options that define the profiled workload; with ``axes`` (a sweep) --batch-size,
    --prompt-len and --max-new-tokens take lists and ranges (``1,4,16``, ``1-64*2``), parsed later."""
    number = str if axes else positive_int
    listed = " (a list or range: 1,4,16 or 1-64*2 or 128-512+128)" if axes else ""
    parser.add_argument(
        "--model",
        default="demo",
        help="'demo' (built-in, no download), a local directory, or a hub id (default: %(default)s)",
    )
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="prompt text, tokenized with the model's tokenizer")
    prompt.add_argument(
        "--prompt-len",
        type=number,
        metavar="N",
        help=f"a synthetic prompt of exactly N random token ids{listed} (default: {DEFAULT_PROMPT_LEN})",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=number,
        default="64" if axes else 64,
        metavar="N",
        help=f"tokens generated per sequence, fewer where it ends on EOS (see --ignore-eos){listed}"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=number,
        default="1" if axes else 1,
        metavar="N",
        help=f"sequences per generate() call{listed} (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=5, metavar="N", help="measured calls (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=warmup_count,
        default=1,
        metavar="N",
        help="unmeasured calls before the repeats, or 'auto': until 3 calls agree within 3%%"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="hf",
        help="hf: transformers' generate(); vllm: vLLM's engine in this process, one request per prompt of the"
        " batch (needs vLLM installed) (default: %(default)s)",
    )
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        type=engine_argument,
        metavar="KEY=VALUE",
        help="with --engine vllm: an argument of vllm.LLM (max_num_seqs=8, enforce_eager=true, ...; the value read"
        " as JSON where it is, else as text; repeatable)",
    )
    parser.add_argument(
        "--request-rate",
        type=request_rate,
        metavar="R",
        help="with --engine vllm: the batch's requests arrive at R per second on average (seeded Poisson) while"
        " the engine steps, instead of all at once: TTFT includes their queueing",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (cuda if available, else cpu), cpu, cuda, cuda:N (default: %(default)s)",
    )
    parser.add_argument(
        "--device-map",
        metavar="MAP",
        help="spread the model over this machine's GPUs (accelerate's device_map: auto, balanced, sequential);"
        " each GPU gets its own timeline lane",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16"],
        help="the weights' dtype; auto: bfloat16 on a GPU that has it, else float16, float32 on the CPU"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--attn-implementation",
        help="eager, sdpa, flash_attention_2, ... (passed to transformers; default: the model's own choice)",
    )
    parser.add_argument("--do-sample", action="store_true", help="multinomial sampling instead of greedy")
    parser.add_argument("--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens")
    parser.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the synthetic prompt and of sampling (default: %(default)s)",
    )
    parser.add_argument(
        "--sample-interval",
        type=sample_interval,
        metavar="SECONDS",
        help="telemetry sampling interval (default: chosen from the probe's measured cost)",
    )
    parser.add_argument("--no-telemetry", action="store_true", help="no NVML / process sampling")
    parser.add_argument(
        "--no-memory-check",
        action="store_true",
        help="run even when the estimate of the memory it needs exceeds what the device has free",
    )
    parser.add_argument(
        "--peak-bandwidth",
        type=rate("B/s", "3350GB/s"),
        metavar="BYTES/S",
        help="the device's peak memory bandwidth for the roofline (e.g. 3.35e12 or 3350GB/s)",
    )
    parser.add_argument(
        "--peak-flops",
        type=rate("FLOP/s|FLOPS", "989TFLOP/s"),
        metavar="FLOP/S",
        help="the device's dense peak FLOP/s in the model's dtype for the roofline (e.g. 989e12 or 989TFLOP/s)",
    )
    parser.add_argument(
        "--measure-peak",
        action="store_true",
        help="measure the device's peaks now (a copy and a matmul, under a second) even for a known GPU",
    )


@dataclass(frozen=True)
class WorkloadOptions:
    """The workload options parsed: what to measure, the telemetry alongside, the peaks of the roofline."""

    spec: WorkloadSpec
    telemetry: TelemetryOptions
    peaks: PeakOptions


def refuse_engine_options(spec: WorkloadSpec) -> None:
    """One line for an engine's option given to transformers' generate() (``--engine hf``)."""
    from llmprof.errors import UsageError

    if spec.engine_args:
        raise UsageError("--engine-arg goes with --engine vllm (or an ab variant's engine=vllm)")
    if spec.request_rate is not None:
        raise UsageError("--request-rate goes with --engine vllm (generate() takes its batch at once)")


def parse_workload(args: argparse.Namespace, **fields: Any) -> WorkloadOptions:
    """The options of :func:`add_workload_options` as typed values; ``fields``: the spec's fields that a
    subcommand's own options set (run's --compile, --patch, --loop, --tp; a sweep's first point)."""
    from llmprof.workloads.engines import TelemetryOptions
    from llmprof.workloads.sizing import PeakOptions

    given = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "attn_implementation": args.attn_implementation,
        "device_map": args.device_map,
        "prompt": args.prompt,
        "prompt_len": args.prompt_len,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": args.do_sample,
        "ignore_eos": args.ignore_eos,
        "seed": args.seed,
        "memory_check": not args.no_memory_check,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "engine": args.engine,
        "engine_args": tuple(args.engine_arg),
        "request_rate": args.request_rate,
    }
    telemetry = TelemetryOptions(not args.no_telemetry, args.sample_interval)
    peaks = PeakOptions(args.peak_bandwidth, args.peak_flops, args.measure_peak)
    return WorkloadOptions(WorkloadSpec(**{**given, **fields}), telemetry, peaks)
