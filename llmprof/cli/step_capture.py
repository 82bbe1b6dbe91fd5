"""The unmeasured calls after the repeats (run, ab): ``--kernels`` (calls under torch.profiler, alternating between
the variants) and the Nsight ranges of ``--nvtx`` / ``--cuda-profiler-range`` (docs/architecture.md, "Kernels",
"Nsight")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmprof.cli.common import non_negative_int, positive_int
from llmprof.errors import UsageError


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


@dataclass(frozen=True)
class StepCapture:
    """What to capture after the repeats: ``kernels`` decode steps under torch.profiler in ``calls`` calls
    (None: the default), over the decode steps ``window`` (None: from the middle); NVTX ranges; a CUDA profiler
    range. The options are checked when it is made (raises UsageError for options that do not go together)."""

    kernels: int = 0
    calls: int | None = None
    steps: str | None = None
    nvtx: bool = False
    cuda_profiler_range: bool = False

    def __post_init__(self) -> None:
        if self.kernels and self.cuda_profiler_range:
            raise UsageError(
                "--kernels and --cuda-profiler-range both need CUPTI (torch.profiler's and Nsight's): run them apart"
            )
        if self.calls is not None and not self.kernels:
            raise UsageError("--kernel-calls goes with --kernels N")
        if self.steps is not None and not (self.kernels or self.cuda_profiler_range):
            raise UsageError("--kernels-steps goes with --kernels N or --cuda-profiler-range")
        self.window  # noqa: B018 - a bad A:B fails now, before any work

    @property
    def window(self) -> tuple[int, int] | None:
        """``--kernels-steps`` parsed (None when not given)."""
        from llmprof.capture.kernels import parse_window

        return None if self.steps is None else parse_window(self.steps)


def _nsight_ranges(capture: StepCapture, max_new_tokens: int, device: Any, name: str) -> Any:
    """The Nsight ranges of ``--nvtx``/``--cuda-profiler-range`` for one call (None without them, or, said on
    stderr, where they cannot be made)."""
    from llmprof.capture.kernels import DEFAULT_STEPS, choose_steps
    from llmprof.capture.nsight import ranges_for, why_unavailable

    if not (capture.nvtx or capture.cuda_profiler_range):
        return None
    why = why_unavailable(device, capture.cuda_profiler_range)
    flags = " and ".join(
        f
        for f, on in (("--nvtx", capture.nvtx), ("--cuda-profiler-range", capture.cuda_profiler_range))
        if on
    )
    if why:
        print(f"llmprof: {name}{flags} did nothing: {why}", file=sys.stderr)
        return None
    steps = choose_steps(max_new_tokens, capture.kernels or DEFAULT_STEPS, capture.window)
    window = (steps[0], steps[-1]) if capture.cuda_profiler_range and steps else None
    what = [
        "NVTX ranges per step" if capture.nvtx else "",
        f"cuProfilerStart/Stop around decode steps {steps[0]}..{steps[-1]}" if window else "",
    ]
    print(f"llmprof: {name}{' and '.join(w for w in what if w)} (Nsight)", file=sys.stderr)
    return ranges_for(device, capture.nvtx, window)


def after_repeats(
    calls: list[tuple[str, Callable[[], Any]]], capture: StepCapture, max_new_tokens: int, device: Any
) -> list[Any]:
    """The unmeasured calls after the repeats, of each variant of ``calls`` (its name in messages, e.g.
    "variant A: ", and its call): the ``--kernel-calls`` kernel-profiled calls of ``--kernels``, alternating
    between the variants (A B A B ...), each variant's joined into one capture (None, said on stderr, when
    none could be taken); the Nsight ranges of ``--nvtx``/``--cuda-profiler-range`` on its first such call (or
    on one of their own)."""
    from llmprof.analysis.kernels import KernelCapture
    from llmprof.capture.nsight import observing

    ranges = [_nsight_ranges(capture, max_new_tokens, device, name) for name, _ in calls]

    def traced(index: int) -> Any:
        with observing(ranges[index]):
            return calls[index][1]()

    captures: list[list[Any]] = [[] for _ in calls]
    for i in range(_kernel_calls(capture)):
        for index, (name, call) in enumerate(calls):
            traced_call = (
                (lambda index=index: traced(index)) if i == 0 and ranges[index] is not None else call
            )
            taken = _kernel_call(traced_call, capture, name, i, captures[index])
            if taken is not None:
                captures[index].append(taken)
    for index, r in enumerate(ranges):
        if r is None:
            continue
        if not capture.kernels:
            traced(index)
        for error in r.errors:
            print(f"llmprof: Nsight ranges: {error}", file=sys.stderr)
    return [KernelCapture.join(c) if c else None for c in captures]


def _kernel_calls(capture: StepCapture) -> int:
    from llmprof.capture.kernels import DEFAULT_CALLS

    return (capture.calls or DEFAULT_CALLS) if capture.kernels else 0


def _kernel_call(call: Callable[[], Any], capture: StepCapture, name: str, i: int, taken: list[Any]) -> Any:
    """Call ``i`` of a variant under torch.profiler: its capture, or None (said on stderr) when it captured
    nothing or other steps than the variant's first capture (whose steps a later call captures)."""
    from llmprof.capture.kernels import profile_call
    from llmprof.errors import CaptureError

    print(
        f"llmprof: {name}one more call under torch.profiler (--kernels {capture.kernels}, call {i + 1}"
        f" of {_kernel_calls(capture)})",
        file=sys.stderr,
    )
    first = taken[0] if taken else None
    window = capture.window if first is None else (first.steps[1], first.steps[-1])
    try:
        result = profile_call(call, capture.kernels, window)
    except CaptureError as exc:
        print(f"llmprof: {name}no kernels from this call: {exc}", file=sys.stderr)
        return None
    if first is not None and result.steps != first.steps:
        print(
            f"llmprof: {name}call {i + 1} under torch.profiler left out: it captured steps"
            f" {result.steps}, the first {first.steps}",
            file=sys.stderr,
        )
        return None
    return result
