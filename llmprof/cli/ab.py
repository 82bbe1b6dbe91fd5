"""Interleaved A/B: two variants of one model run alternately in one process, then compared.

The variants (attention implementation, torch.compile, dtype, a patch, a decode loop) alternate call by call,
A B A B ..., so that machine drift hits both alike; then they are compared as `compare` does.

Variants are KEY=VALUE lists: --a attn=eager --b attn=sdpa; --b compile=on; --b dtype=bf16;
--b patch=my_kernels:install; --b loop=my_loop:decode (a decode loop of one's own against generate(), as
`run --loop` takes it; --loop sets one for both variants, loop=generate goes back to generate()). attn and
compile switch on the same loaded model; dtype and patch variants run on their own copy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmprof.cli import interrupts
from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.compare import (
    add_comparison_output,
    check_comparison_output,
    emit_comparison,
    failed_thresholds,
)
from llmprof.cli.ranks import refuse_under_torchrun
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
from llmprof.errors import UsageError

# what a variant sets in its run's config
SETTINGS = ("dtype", "attn_implementation", "compile", "patch", "loop")


def _settings(variant: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The run config's entries that this variant sets (SETTINGS), ``base``'s where it sets none."""
    values = (
        variant.dtype or base["dtype"],
        variant.attn or base["attn_implementation"],
        variant.compile,
        variant.patch,
        variant.loop,
    )
    return dict(zip(SETTINGS, values))


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``ab``."""
    add_workload_options(parser)
    add_step_capture_options(parser)
    parser.add_argument(
        "--a", nargs="*", default=[], metavar="KEY=VALUE", help="variant A (default: as loaded)"
    )
    parser.add_argument("--b", nargs="+", required=True, metavar="KEY=VALUE", help="variant B")
    parser.add_argument(
        "--loop",
        metavar="MODULE:FUNCTION",
        help="both variants run this decode loop instead of generate() (as run --loop), unless they set loop=",
    )
    parser.add_argument("--json-a", metavar="FILE", help="save variant A's run as JSON")
    parser.add_argument("--json-b", metavar="FILE", help="save variant B's run as JSON")
    add_comparison_output(parser)


def main(args: argparse.Namespace) -> int:
    """Run both variants interleaved and compare them; returns the exit status."""
    refuse_under_torchrun("ab")
    from llmprof.capture.environment import capture_environment
    from llmprof.capture.profiler import Profiler
    from llmprof.capture.recorder import Recorder
    from llmprof.runfile import Run
    from llmprof.workloads.memory import check_copies
    from llmprof.workloads.models import DTYPES
    from llmprof.workloads.runner import profiled_call, recorded_call, warm_up
    from llmprof.workloads.variants import Variant, own_copies, prepare

    for path, option in ((args.json_a, "--json-a"), (args.json_b, "--json-b")):
        check_output_path(path, option)
    check_comparison_output(args)
    check_distinct([], {"--json-a": args.json_a, "--json-b": args.json_b, "--output": args.output})
    kernel_window(args)
    variants = [
        Variant.parse(name, _with_loop(items, args.loop)) for name, items in (("A", args.a), ("B", args.b))
    ]
    workload = load_workload(args)
    if not args.no_memory_check:
        model = workload.loaded.model
        check_copies(
            model,
            workload.loaded.device,
            {v.name: DTYPES[v.dtype] if v.dtype else model.dtype for v in own_copies(variants)},
        )
    prepared = prepare(workload.loaded.model, variants)
    for p in prepared:  # a bad setting (e.g. an unknown attention implementation) fails before any work
        p.activate()
    profilers = {}
    for p in prepared:  # one profiler per model instance: variants that share the model share it
        profilers.setdefault(
            id(p.model),
            Profiler(p.model, telemetry=not args.no_telemetry, sample_interval=args.sample_interval),
        )
    recorders = {id(p.model): Recorder.for_model(p.model) for p in prepared if p.loop is not None}
    loop_inputs = {**workload.inputs, "max_new_tokens": args.max_new_tokens}
    runs = [
        Run(
            config={
                **workload.config,
                **_settings(p.variant, workload.config),
                "variant": p.variant.describe(),
            },
            environment=capture_environment(p.model),
            roofline=roofline(p.model, workload.loaded.device, args),
        )
        for p in prepared
    ]
    if same_variant(runs):  # said before the work too, so that a mistyped A/B can be stopped at once
        print(f"llmprof: warning: {same_variant(runs)}", file=sys.stderr)

    def unmeasured(index: int, warmup: bool = True):
        p = prepared[index]
        p.activate()
        if p.loop is None:
            return profiled_call(profilers[id(p.model)], workload.inputs, warmup, **workload.generate_kwargs)
        return recorded_call(p.loop, recorders[id(p.model)], p.model, loop_inputs, warmup)

    def call(index: int, warmup: bool):
        p = prepared[index]
        record = unmeasured(index, warmup)
        runs[index].records.append(record)
        progress(len(runs[index].records), None, record, name=f"{p.variant.name} ")
        return record

    status = 0
    for profiler in profilers.values():
        profiler.attach()
    try:
        with interrupts.stopping():
            for index in range(2):  # warm each variant (its compile and caches), then alternate the repeats
                for _ in warm_up(lambda index=index: call(index, True), args.warmup):
                    pass
            for _ in range(args.repeats):
                for index in range(2):
                    call(index, False)
            # after the repeats, which they would perturb: the variants' calls alternate
            after = [
                (f"variant {p.variant.name}: ", lambda index=i: unmeasured(index))
                for i, p in enumerate(prepared)
            ]
            for run, capture in zip(runs, after_repeats(after, args, workload.loaded.device)):
                run.kernels = capture
    except (KeyboardInterrupt, Exception) as exc:
        if isinstance(exc, UsageError):  # a variant that cannot be applied: nothing to keep
            raise
        status = 128 + interrupts.signal_number(exc) if isinstance(exc, KeyboardInterrupt) else 1
        print(failure(exc, min(len(r.measured) for r in runs), args.repeats, args), file=sys.stderr)
    finally:
        for profiler in profilers.values():
            profiler.detach()
    with interrupts.deferred() as caught:  # a signal now waits: the saves and the comparison are not cut
        saved = [
            close_run(
                run, profilers[id(p.model)].telemetry, status, args, f"variant {p.variant.name} was ", path
            )
            for run, p, path in zip(runs, prepared, (args.json_a, args.json_b))
        ]
        regressed = _compare(runs, prepared, variants, args) if all(r.measured for r in runs) else 0
    return status or (128 + caught[0] if caught else 0) or (0 if all(saved) else 1) or regressed


def same_variant(runs: list[Any]) -> str:
    """A warning when A and B set the same attention, compile, dtype, patch and loop (e.g. ``--b attn=sdpa`` on
    a model loaded with sdpa): an A/A run, whose differences are noise; else empty."""
    settings = [{key: run.config[key] for key in SETTINGS} for run in runs]
    if settings[0] != settings[1]:
        return ""
    shown = ", ".join(f"{key}={value}" for key, value in settings[0].items() if value not in (None, False))
    return f"A and B are the same variant ({shown}): an A/A run, its differences are noise"


def _with_loop(items: list[str], loop: str | None) -> list[str]:
    """A variant's items, with ``loop=LOOP`` first when ``--loop`` was given and the variant sets none."""
    if loop is None or any(item.startswith("loop=") for item in items):
        return items
    return [f"loop={loop}", *items]


def _compare(runs: list[Any], prepared: list[Any], variants: list[Any], args: argparse.Namespace) -> int:
    """B against A, as ``compare`` shows it, with what else differs than the variables under test; the exit
    status of --fail-on."""
    from llmprof.analysis.compare import compare_kernels, compare_runs, regressions, setup_differences
    from llmprof.report.comparison import ComparisonReport
    from llmprof.workloads.variants import KEYS

    variables = [key for key in KEYS if getattr(variants[0], key) != getattr(variants[1], key)]
    labels = (prepared[0].variant.label(), prepared[1].variant.label())
    differences = setup_differences(*runs, variables)
    if same_variant(runs):
        differences.append(same_variant(runs))
    report = ComparisonReport(*labels, compare_runs(runs[0], runs[1]), differences, compare_kernels(*runs))
    emit_comparison([report], runs, args)
    return failed_thresholds(regressions(report.comparisons, args.fail_on), args.allow_unjudged)
