"""What ``run``, ``ab`` and ``sweep`` share: the options that define a workload (model, prompt, tokens,
repeats, device, ...), loading it, and the progress line."""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from llmprof.cli.common import non_negative_int, positive_int, rate, seed
from llmprof.cli.interrupts import signal_number
from llmprof.errors import UsageError

DEFAULT_PROMPT_LEN = 128


def sample_interval(text: str) -> float:
    """argparse type: a telemetry sampling interval in seconds, within the bounds the sampler takes."""
    from llmprof.capture.sampling.base import checked_interval

    try:
        return checked_interval(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc) if "interval" in str(exc) else f"not a number: {text!r}"
        ) from None


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


def add_step_capture_options(parser: argparse.ArgumentParser) -> None:
    """Declare the options of the unmeasured calls after the repeats: --kernels, --nvtx, ... (run, ab)."""
    parser.add_argument(
        "--kernels",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="after the repeats, more calls under torch.profiler (--kernel-calls): the operators/kernels of"
        " the prefill and of N decode steps (from the middle of the generation), per step",
    )
    parser.add_argument(
        "--kernel-calls",
        type=positive_int,
        metavar="K",
        help="with --kernels: K calls under torch.profiler (default 3; in ab per variant, alternating A B A B):"
        " the kernel diff's CI resamples the calls",
    )
    parser.add_argument(
        "--kernels-steps",
        metavar="A:B",
        help="with --kernels or --cuda-profiler-range: decode steps A..B instead (the steps producing tokens A..B)",
    )
    parser.add_argument(
        "--nvtx",
        action="store_true",
        help="for Nsight: after the repeats, one more call with an NVTX range per request and per step"
        " (the --kernels call, if any)",
    )
    parser.add_argument(
        "--cuda-profiler-range",
        action="store_true",
        help="for `nsys profile --capture-range=cudaProfilerApi`: after the repeats, one more call with"
        " cuProfilerStart/Stop around the decode steps of --kernels-steps (default: 8 from the middle)",
    )


@dataclass
class Workload:
    """A loaded model with its inputs and generate() arguments, and the configuration to record."""

    loaded: Any
    inputs: dict[str, Any]
    generate_kwargs: dict[str, Any]
    config: dict[str, Any]


def load_workload(args: argparse.Namespace) -> Workload:
    """Load the model and build the prompts; raises UsageError (ModelLoadError) for a bad workload."""
    from llmprof.workloads.models import load_model

    loaded = load_model(
        args.model,
        args.device,
        args.dtype,
        args.attn_implementation,
        getattr(args, "tp", False),
        args.device_map,
    )
    return workload_for(loaded, args)


def workload_for(loaded: Any, args: argparse.Namespace) -> Workload:
    """The prompts and generate() arguments of ``args`` for a loaded model; raises UsageError when they do
    not fit its context or the device's memory."""
    import torch

    inputs, prompt_tokens, tokenize_s = _make_inputs(loaded, args)
    torch.manual_seed(args.seed)
    config = {
        "model": args.model,
        "device": str(loaded.device),
        **({"device_map": args.device_map} if args.device_map else {}),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "attn_implementation": getattr(loaded.model.config, "_attn_implementation", args.attn_implementation),
        "batch_size": args.batch_size,
        "prompt_tokens": prompt_tokens,
        "prompt": args.prompt,
        "tokenize_s": tokenize_s,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "warmup": "auto" if args.warmup is None else args.warmup,
        "do_sample": args.do_sample,
        "ignore_eos": args.ignore_eos,
        "seed": args.seed,
    }
    return Workload(loaded, inputs, _generate_kwargs(loaded, args), config)


def roofline(model: Any, device: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    """The model's shape and the device's peaks, for the run's ``roofline``; None, said on stderr, when the
    model cannot be sized or the peaks cannot be measured."""
    from llmprof.analysis.roofline import Roofline, si
    from llmprof.capture.model_shape import model_shape
    from llmprof.capture.peak import resolve_peaks

    try:
        shape = model_shape(model)
        peaks, measurement = resolve_peaks(
            device, model.dtype, args.peak_bandwidth, args.peak_flops, args.measure_peak
        )
    except (ValueError, RuntimeError) as exc:  # an unknown architecture; out of memory while measuring
        print(f"llmprof: no roofline: {exc}", file=sys.stderr)
        return None
    if measurement is not None and measurement.fresh:
        print(
            f"peaks measured on {peaks.device} in {measurement.seconds:.2f} s: "
            f"{si(measurement.bandwidth, 'B/s')} copy, {si(measurement.flops, 'FLOP/s')} {peaks.dtype} matmul",
            file=sys.stderr,
        )
    return Roofline(shape, peaks).to_dict()


def _make_inputs(loaded: Any, args: argparse.Namespace) -> tuple[dict[str, Any], int, float | None]:
    """The batch of prompts on the model's device, its length, and the tokenization time (None if synthetic)."""
    import torch

    tokenizer = loaded.tokenizer
    tokenize_s = None
    if args.prompt is not None:
        if tokenizer is None:
            from llmprof.workloads.models import TOKENIZER_FILES

            raise UsageError(
                f"--prompt: the folder {args.model!r} has no tokenizer (no {' or '.join(TOKENIZER_FILES)});"
                " --prompt-len N needs none (synthetic token ids)"
            )
        start = time.perf_counter()
        ids = tokenizer(args.prompt, return_tensors="pt").input_ids
        tokenize_s = time.perf_counter() - start
        if ids.shape[1] == 0:
            raise UsageError("--prompt tokenizes to zero tokens")
        _check_room(loaded, args, int(ids.shape[1]))
        ids = ids.repeat(args.batch_size, 1)
    else:
        length = args.prompt_len or DEFAULT_PROMPT_LEN
        _check_room(loaded, args, length)  # before allocating the prompts
        vocab, special_ids = _vocabulary(loaded)
        special = torch.tensor(sorted(special_ids), dtype=torch.long)
        allowed = torch.arange(vocab)[~torch.isin(torch.arange(vocab), special)]
        if not len(allowed):
            raise UsageError(f"model {args.model!r} has no ordinary token to build a prompt from")
        generator = torch.Generator().manual_seed(args.seed)
        ids = allowed[torch.randint(len(allowed), (args.batch_size, length), generator=generator)]
    prompt_tokens = int(ids.shape[1])
    inputs = {"input_ids": ids.to(loaded.device), "attention_mask": torch.ones_like(ids).to(loaded.device)}
    return inputs, prompt_tokens, tokenize_s


def _vocabulary(loaded: Any) -> tuple[int, set[int]]:
    """The ids a synthetic prompt draws from (those below the first) less the special ones: the tokenizer's,
    or without one the model configuration's vocabulary size and its BOS, EOS, pad and decoder-start ids."""
    embeddings = loaded.model.get_input_embeddings().num_embeddings
    if loaded.tokenizer is not None:
        return min(len(loaded.tokenizer), embeddings), set(loaded.tokenizer.all_special_ids)
    config = loaded.model.config
    text = getattr(config, "get_text_config", lambda: config)()
    special: set[int] = set()
    for source in (text, loaded.model.generation_config):
        for field in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            value = getattr(source, field, None)
            special.update(value if isinstance(value, list) else [] if value is None else [value])
    return min(getattr(text, "vocab_size", None) or embeddings, embeddings), special


def _check_room(loaded: Any, args: argparse.Namespace, prompt_tokens: int) -> None:
    """The prompt and its new tokens fit the model's context, and the run the device's memory."""
    from llmprof.workloads.memory import check_fits

    context = loaded.context_length
    depth = getattr(args, "depth", None) or 0  # a sweep's tokens already in the KV cache before the prompt
    before = f"--depth {depth} + " if depth else ""
    if context is not None and depth + prompt_tokens + args.max_new_tokens > context:
        raise UsageError(
            f"{before}prompt of {prompt_tokens} tokens + --max-new-tokens {args.max_new_tokens} exceeds the "
            f"model's context of {context} tokens"
        )
    if not args.no_memory_check and not args.device_map:  # the estimate is for one device
        check_fits(loaded.model, loaded.device, args.batch_size, depth + prompt_tokens, args.max_new_tokens)


def _generate_kwargs(loaded: Any, args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample}
    ids = loaded.tokenizer if loaded.tokenizer is not None else loaded.model.generation_config
    pad = ids.pad_token_id if ids.pad_token_id is not None else ids.eos_token_id
    pad = pad[0] if isinstance(pad, list) and pad else pad  # a generation config's EOS may be a list
    if pad is not None:
        kwargs["pad_token_id"] = pad
    if not args.do_sample:  # silence the warnings about sampling parameters that greedy ignores
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if args.ignore_eos:
        kwargs["min_new_tokens"] = args.max_new_tokens
    return kwargs


def kernel_window(args: argparse.Namespace) -> tuple[int, int] | None:
    """``--kernels-steps`` parsed (None when not given); raises UsageError for options that do not go
    together."""
    from llmprof.capture.kernels import parse_window

    if args.kernels and args.cuda_profiler_range:
        raise UsageError(
            "--kernels and --cuda-profiler-range both need CUPTI (torch.profiler's and Nsight's): run them apart"
        )
    if args.kernel_calls is not None and not args.kernels:
        raise UsageError("--kernel-calls goes with --kernels N")
    if args.kernels_steps is None:
        return None
    if not (args.kernels or args.cuda_profiler_range):
        raise UsageError("--kernels-steps goes with --kernels N or --cuda-profiler-range")
    return parse_window(args.kernels_steps)


def _nsight_ranges(args: argparse.Namespace, device: Any, name: str) -> Any:
    """The Nsight ranges of ``--nvtx``/``--cuda-profiler-range`` for one call (None without them, or, said on
    stderr, where they cannot be made)."""
    from llmprof.capture.kernels import DEFAULT_STEPS, choose_steps
    from llmprof.capture.nsight import ranges_for, why_unavailable

    if not (args.nvtx or args.cuda_profiler_range):
        return None
    why = why_unavailable(device, args.cuda_profiler_range)
    flags = " and ".join(
        f for f, on in (("--nvtx", args.nvtx), ("--cuda-profiler-range", args.cuda_profiler_range)) if on
    )
    if why:
        print(f"llmprof: {name}{flags} did nothing: {why}", file=sys.stderr)
        return None
    steps = choose_steps(args.max_new_tokens, args.kernels or DEFAULT_STEPS, kernel_window(args))
    window = (steps[0], steps[-1]) if args.cuda_profiler_range and steps else None
    what = [
        "NVTX ranges per step" if args.nvtx else "",
        f"cuProfilerStart/Stop around decode steps {steps[0]}..{steps[-1]}" if window else "",
    ]
    print(f"llmprof: {name}{' and '.join(w for w in what if w)} (Nsight)", file=sys.stderr)
    return ranges_for(device, args.nvtx, window)


def after_repeats(calls: list[tuple[str, Any]], args: argparse.Namespace, device: Any) -> list[Any]:
    """The unmeasured calls after the repeats, of each variant of ``calls`` (its name in messages, e.g.
    "variant A: ", and its call): the ``--kernel-calls`` kernel-profiled calls of ``--kernels``, alternating
    between the variants (A B A B ...), each variant's joined into one capture (None, said on stderr, when
    none could be taken); the Nsight ranges of ``--nvtx``/``--cuda-profiler-range`` on its first such call (or
    on one of their own)."""
    from llmprof.analysis.kernels import KernelCapture
    from llmprof.capture.kernels import DEFAULT_CALLS, profile_call
    from llmprof.capture.nsight import observing
    from llmprof.errors import CaptureError

    ranges = [_nsight_ranges(args, device, name) for name, _ in calls]

    def traced(index: int) -> Any:
        with observing(ranges[index]):
            return calls[index][1]()

    captures: list[list[Any]] = [[] for _ in calls]
    count = args.kernel_calls or DEFAULT_CALLS
    for i in range(count if args.kernels else 0):
        for index, (name, call) in enumerate(calls):
            print(
                f"llmprof: {name}one more call under torch.profiler (--kernels {args.kernels}, call {i + 1}"
                f" of {count})",
                file=sys.stderr,
            )
            first = captures[index][0] if captures[index] else None
            # a later call captures the first one's steps
            window = kernel_window(args) if first is None else (first.steps[1], first.steps[-1])
            try:
                capture = profile_call(
                    (lambda index=index: traced(index)) if i == 0 and ranges[index] is not None else call,
                    args.kernels,
                    window,
                )
            except CaptureError as exc:
                print(f"llmprof: {name}no kernels from this call: {exc}", file=sys.stderr)
                continue
            if first is not None and capture.steps != first.steps:
                print(
                    f"llmprof: {name}call {i + 1} under torch.profiler left out: it captured steps"
                    f" {capture.steps}, the first {first.steps}",
                    file=sys.stderr,
                )
                continue
            captures[index].append(capture)
    for index, r in enumerate(ranges):
        if r is None:
            continue
        if not args.kernels:
            traced(index)
        for error in r.errors:
            print(f"llmprof: Nsight ranges: {error}", file=sys.stderr)
    return [KernelCapture.join(c) if c else None for c in captures]


def progress(done: int, total: int | None, record: Any, name: str = "") -> None:
    """One progress line per call: rewritten in place on a terminal, a line each in a log."""
    on_terminal = sys.stderr.isatty()
    kind = "warm-up" if record.warmup else "repeat"
    start, end = record.window
    seconds = (end - start) / 1e9
    of = f"/{total}" if total is not None else ""
    print(
        f"[{done}{of}] {name}{kind} done: {sum(record.tokens_per_sequence)} tokens in {seconds:.2f} s",
        end="\r" if on_terminal and done != total else "\n",
        file=sys.stderr,
        flush=True,
    )


def line_break() -> str:
    """Ends the progress line on a terminal (where it is rewritten in place with a carriage return)."""
    return "\n" if sys.stderr.isatty() else ""


def failure(exc: BaseException, measured: int, repeats: int, args: argparse.Namespace) -> str:
    """The one-line message of a generate() that failed (or was interrupted) after ``measured`` repeats;
    with ``--debug`` its traceback is printed first."""
    if getattr(args, "debug", False):
        traceback.print_exception(exc)
    if isinstance(exc, KeyboardInterrupt):
        name = signal.Signals(signal_number(exc)).name
        return f"{line_break()}llmprof: interrupted after {measured} of {repeats} repeats ({name})"
    text = str(exc).strip().splitlines()
    return (
        f"{line_break()}llmprof: error: {'the loop' if getattr(args, 'loop', None) else 'generate()'} failed"
        f" after {measured} of {repeats} repeats: "
        f"{type(exc).__name__}: {text[0] if text else ''}"
    )


def close_run(
    run: Any,
    telemetry: dict[str, Any] | None,
    status: int,
    args: argparse.Namespace,
    name: str = "",
    path: str | None = None,
) -> bool:
    """Finish a run's record after its calls: telemetry, whether it was cut short, how many warm-ups it took
    (warning when ``--warmup auto`` never settled), then save it to ``path`` if one was given and something
    was measured (a run that measured nothing leaves an existing file as it was). False when saving failed:
    the reason is printed, and the results are still shown."""
    from llmprof.runfile import save_run
    from llmprof.workloads.runner import is_steady

    run.telemetry = telemetry
    run.interrupted = status != 0
    warmups = [r for r in run.records if r.warmup]
    run.config["warmup_calls"] = len(warmups)
    if args.warmup is None and status == 0 and not is_steady(warmups):
        print(f"llmprof: warning: {name}not steady after {len(warmups)} warm-up calls", file=sys.stderr)
    if not path:
        return True
    if not run.measured:
        print(f"llmprof: nothing was measured: {path} is left as it was", file=sys.stderr)
        return True
    try:
        save_run(run, path)
    except OSError as exc:
        print(f"llmprof: error: the run could not be saved to {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    print(f"run saved to {path}", file=sys.stderr)
    return True
