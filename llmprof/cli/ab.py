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
from dataclasses import replace
from typing import Any

from llmprof.analysis.config_keys import VARIANT as SETTINGS  # what a variant sets in its run's config
from llmprof.analysis.config_keys import value
from llmprof.cli import interrupts
from llmprof.cli.common import check_distinct, check_output_path
from llmprof.cli.compare import add_comparison_output, emit_comparison, failed_thresholds
from llmprof.cli.measure import Arm, exit_status, measure, save
from llmprof.cli.output import Output, output_of
from llmprof.cli.ranks import refuse_under_torchrun
from llmprof.cli.step_capture import StepCapture, add_step_capture_options
from llmprof.cli.workload import add_workload_options, parse_workload, refuse_engine_options
from llmprof.errors import UsageError


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
    from llmprof.workloads.engines import attached
    from llmprof.workloads.variants import Variant

    for path, option in ((args.json_a, "--json-a"), (args.json_b, "--json-b")):
        check_output_path(path, option)
    output = output_of(args)
    check_distinct([], {"--json-a": args.json_a, "--json-b": args.json_b, "--output": output.path})
    capture = StepCapture(
        args.kernels, args.kernel_calls, args.kernels_steps, args.nvtx, args.cuda_profiler_range
    )
    variants = [
        Variant.parse(name, _with_loop(items, args.loop)) for name, items in (("A", args.a), ("B", args.b))
    ]
    options = parse_workload(args)
    engines = _engines(variants, options.spec, capture)
    arms, device = _all_arms(variants, engines, options)
    runs = [arm.run for arm in arms]
    if same_variant(runs):  # said before the work too, so that a mistyped A/B can be stopped at once
        print(f"llmprof: warning: {same_variant(runs)}", file=sys.stderr)
    with attached([arm.engine for arm in arms]):
        failing = "the loop" if args.loop else "generate()"
        status = measure(arms, capture, device, failing, args.debug)
    with interrupts.deferred() as caught:  # a signal now waits: the saves and the comparison are not cut
        saved = []
        for arm, path in zip(arms, (args.json_a, args.json_b)):
            arm.close(status)
            saved.append(save(arm.run, path))
        regressed = 0
        if all(run.measured for run in runs):
            regressed = _compare(arms, variants, output, args.fail_on, args.allow_unjudged)
    return exit_status(status, caught, all(saved)) or regressed


def _engines(variants: list[Any], spec: Any, capture: StepCapture) -> list[str]:
    """Each variant's engine (its own, else --engine's), checked against the options before anything loads."""
    engines = [v.engine or spec.engine for v in variants]
    if engines == ["hf", "hf"]:
        refuse_engine_options(spec)
    elif spec.request_rate is not None and "hf" in engines:
        raise UsageError("--request-rate against generate(), which takes its batch at once: no comparison")
    if (capture.nvtx or capture.cuda_profiler_range) and "vllm" in engines:
        raise UsageError("--nvtx and --cuda-profiler-range with a vllm variant: not yet (--kernels N is)")
    for variant, engine in zip(variants, engines):
        for key in ("attn", "compile", "loop"):
            if engine != "hf" and getattr(variant, key):
                raise UsageError(
                    f"variant {variant.name}: {key}= is not for engine=vllm (engine-arg=... instead)"
                )
    return engines


def _all_arms(variants: list[Any], engines: list[str], options: Any) -> tuple[list[Arm], Any]:
    """A and B: generate()'s variants on the model loaded once, vLLM's each on an engine of its own, all on the
    same prompts (as token ids), and the loaded model's device (None without generate()'s); raises UsageError for
    a variant that cannot be applied, before any work."""
    import torch

    from llmprof.workloads.engines import load
    from llmprof.workloads.inputs import build_inputs

    hf = [v for v, engine in zip(variants, engines) if engine == "hf"]
    arms: dict[str, Arm] = {}
    rows, device = None, None
    if hf:
        loaded = load(options.spec)
        inputs, device = build_inputs(loaded, options.spec), loaded.device
        rows = inputs.tensors["input_ids"].tolist()
        arms |= {arm.name: arm for arm in _arms(loaded, inputs, hf, options)}
    threads = torch.get_num_threads()
    for variant, engine in zip(variants, engines):
        if engine != "hf":
            arm = arms[variant.name] = _engine_arm(variant, options, rows)
            rows = rows or [prompt["prompt_token_ids"] for prompt in arm.inputs.tensors["prompts"]]
    if hf and torch.get_num_threads() != threads:
        print(
            f"llmprof: warning: vLLM set torch's threads from {threads} to {torch.get_num_threads()} in this"
            " process: generate()'s variant runs with them too",
            file=sys.stderr,
        )
    return [arms[v.name] for v in variants], device


def _engine_arm(variant: Any, options: Any, rows: list[list[int]] | None) -> Arm:
    """A vLLM variant: its engine built with the command line's and its own engine arguments, its dtype and
    patch; its prompts ``rows`` (the other variant's token ids) or its own."""
    from llmprof.runfile import Run
    from llmprof.workloads import vllm_engine

    spec = replace(
        options.spec,
        engine="vllm",
        engine_args=options.spec.engine_args + variant.engine_args,
        dtype=variant.dtype or options.spec.dtype,
        patch=variant.patch,
    )
    loaded = vllm_engine.load(spec, f"--{variant.name.lower()} patch={variant.patch}")
    if rows is None:
        inputs = vllm_engine.build_inputs(loaded, spec)
    else:
        inputs = vllm_engine.inputs_of(rows, loaded, spec, None)
    engine = vllm_engine.VllmGenerate(loaded, options.telemetry, spec)
    run = Run(config={}, environment=vllm_engine.environment())
    return Arm(variant.name, spec, engine, inputs, run, inputs.loaded, {"variant": variant.describe()})


def _arms(loaded: Any, inputs: Any, variants: list[Any], options: Any) -> list[Arm]:
    """generate()'s variants built on the loaded model (copies where they need them, checked to fit), each with
    its engine, inputs and run; raises UsageError for a variant that cannot be applied, before any work."""
    from llmprof.capture.environment import capture_environment
    from llmprof.runfile import Run
    from llmprof.workloads.engines import engines_for
    from llmprof.workloads.memory import check_copies
    from llmprof.workloads.models import DTYPES
    from llmprof.workloads.sizing import roofline_inputs
    from llmprof.workloads.variants import own_copies, prepare

    spec, model = options.spec, loaded.model
    if spec.memory_check:
        copies = {v.name: DTYPES[v.dtype] if v.dtype else model.dtype for v in own_copies(variants)}
        check_copies(model, loaded.device, copies)
    prepared = prepare(model, variants)
    for p in prepared:  # a bad setting (e.g. an unknown attention implementation) fails before any work
        p.activate()
    engines = engines_for([(p.model, p.loop) for p in prepared], spec, options.telemetry)
    return [
        Arm(
            p.variant.name,
            replace(spec, compile=p.variant.compile, patch=p.variant.patch, loop=p.variant.loop),
            engine,
            inputs,
            Run(
                config={},
                environment=capture_environment(p.model),
                roofline=roofline_inputs(p.model, loaded.device, options.peaks),
            ),
            p.variant.applied_to(inputs.loaded),
            {"variant": p.variant.describe()},
            p.activate,
        )
        for p, engine in zip(prepared, engines)
    ]


def _field(key: str) -> str:
    """The Variant field of a ``--a``/``--b`` key."""
    return key.replace("engine-arg", "engine_args")


def same_variant(runs: list[Any]) -> str:
    """A warning when A and B set the same attention, compile, dtype, patch and loop (e.g. ``--b attn=sdpa`` on
    a model loaded with sdpa): an A/A run, whose differences are noise; else empty."""
    settings = [{key: value(run.config, key) for key in SETTINGS} for run in runs]
    if settings[0] != settings[1]:
        return ""
    shown = ", ".join(f"{key}={value}" for key, value in settings[0].items() if value not in (None, False))
    return f"A and B are the same variant ({shown}): an A/A run, its differences are noise"


def _with_loop(items: list[str], loop: str | None) -> list[str]:
    """A variant's items, with ``loop=LOOP`` first when ``--loop`` was given and the variant sets none."""
    if loop is None or any(item.startswith("loop=") for item in items):
        return items
    return [f"loop={loop}", *items]


def _compare(
    arms: list[Arm], variants: list[Any], output: Output, thresholds: list, allow_unjudged: bool
) -> int:
    """B against A, as ``compare`` shows it, with what else differs than the variables under test; the exit
    status of the ``thresholds`` (--fail-on)."""
    from llmprof.analysis.compare import compare_kernels, compare_runs, regressions, setup_differences
    from llmprof.report.comparison import ComparisonReport
    from llmprof.workloads.variants import KEYS

    labels = {
        "engine-arg": "engine arguments"
    }  # a key's label among the setup differences, where not its own
    variables = [
        labels.get(k, k) for k in KEYS if getattr(variants[0], _field(k)) != getattr(variants[1], _field(k))
    ]
    if "engine" in variables:  # an engine's own arguments and attention: no settings of generate()'s
        variables += ["engine arguments", "attn"]
    runs = [arm.run for arm in arms]
    labels = (variants[0].label(), variants[1].label())
    differences = setup_differences(*runs, variables)
    if same_variant(runs):
        differences.append(same_variant(runs))
    report = ComparisonReport(*labels, compare_runs(runs[0], runs[1]), differences, compare_kernels(*runs))
    emit_comparison([report], runs, output)
    return failed_thresholds(regressions(report.comparisons, thresholds), allow_unjudged)
