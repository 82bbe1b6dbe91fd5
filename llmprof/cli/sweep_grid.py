"""What every point of a sweep measures with (docs/architecture.md, "The workload"): the model or the engine,
loaded once, its environment and the command line's spec, and how a point's arm is made. A ``ModelGrid`` measures
generate() with a kernel swap per combination of the --variant axes; an ``EngineGrid`` measures vLLM's engine,
each point's run getting the engine steps of its own calls."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmprof.cli.measure import Arm

if TYPE_CHECKING:  # the torch-free commands (report, compare) import the CLI without torch
    from llmprof.cli.workload import WorkloadOptions
    from llmprof.workloads.engines import Engine
    from llmprof.workloads.inputs import Inputs
    from llmprof.workloads.spec import WorkloadSpec

AXES = ("batch_size", "prompt_len", "depth", "max_new_tokens")  # the slowest first: larger batches come later


@dataclass
class Grid(ABC):
    """The command line's spec, the environment, and the batches that ran out of memory ((the point less its
    batch) -> batch); a subclass makes the points' inputs and arms."""

    spec: WorkloadSpec
    environment: dict[str, Any]
    out_of_memory: dict[tuple[Any, ...], int] = field(default_factory=dict, init=False)

    @property
    @abstractmethod
    def device(self) -> str:
        """The device the points run on, as the sweep's config says it."""

    @property
    @abstractmethod
    def dtype(self) -> str:
        """The dtype the model was loaded in, as the sweep's config says it."""

    @abstractmethod
    def engines(self) -> list[Engine]:
        """The engines whose attachments are entered around the points' calls."""

    @abstractmethod
    def inputs(self, params: dict[str, Any]) -> Inputs:
        """The point's inputs, built before any call; raises UsageError when they do not fit (the context, the
        memory estimate)."""

    @abstractmethod
    def arm(self, params: dict[str, Any]) -> Arm:
        """The point's arm, its run empty; raises UsageError or CaptureError when the point is refused."""

    def close(self, arm: Arm, since_ns: int) -> None:
        """Finish the point's run after its calls, its telemetry the samples since ``since_ns``."""
        arm.close(0, since_ns=since_ns)

    def spec_of(self, params: dict[str, Any]) -> WorkloadSpec:
        """The command line's spec with the point's axes set."""
        return replace(self.spec, **{k: v for k, v in params.items() if k in AXES})

    def skipped(self, params: dict[str, Any]) -> str | None:
        """Why the point is skipped (a smaller batch of the same rest ran out of memory), or None."""
        smallest = self.out_of_memory.get(_rest(params))
        if smallest is None or params["batch_size"] < smallest:
            return None
        return f"batch {smallest} ran out of memory at the same prompt and generation"

    def ran_out(self, params: dict[str, Any]) -> None:
        rest = _rest(params)
        self.out_of_memory[rest] = min(
            params["batch_size"], self.out_of_memory.get(rest, params["batch_size"])
        )


@dataclass
class SweptVariant:
    """One kernel swap of the sweep: the prepared variant (its model), its engine, and its roofline inputs (a
    dtype changes the bytes)."""

    prepared: Any
    engine: Any
    roofline: dict[str, Any] | None


@dataclass
class ModelGrid(Grid):
    """generate() on the loaded model, the kernel swaps by key."""

    loaded: Any
    variants: dict[Any, SweptVariant]

    @property
    def device(self) -> str:
        return str(self.loaded.device)

    @property
    def dtype(self) -> str:
        return str(self.loaded.dtype).removeprefix("torch.")

    def engines(self) -> list[Engine]:
        return [v.engine for v in self.variants.values()]

    def inputs(self, params: dict[str, Any]) -> Inputs:
        from llmprof.workloads.inputs import build_inputs

        return build_inputs(self.loaded, self.spec_of(params))

    def arm(self, params: dict[str, Any]) -> Arm:
        """The point's variant made active, its inputs prefilled to the point's depth (a model without cache
        raises CaptureError)."""
        from llmprof.runfile import Run

        spec = self.spec_of(params)
        variant = self.variants[_variant_key(params)]
        variant.prepared.activate()
        inputs = self.inputs(params).at_depth(variant.prepared.model, spec.depth, spec.seed)
        run = Run(config={}, environment=self.environment, roofline=variant.roofline)
        described = {"variant": variant.prepared.variant.describe(), "sweep_point": dict(params)}
        loaded = variant.prepared.variant.applied_to(inputs.loaded)
        return Arm("", spec, variant.engine, inputs, run, loaded, described)


@dataclass
class EngineGrid(Grid):
    """vLLM's engine, built once: every point's requests go to it; ``since`` holds its profiler's step rows and
    dropped requests when the point under way began, what its run's share is cut from."""

    loaded: Any  # workloads.vllm_engine.LoadedEngine
    engine: Any  # workloads.vllm_engine.VllmGenerate
    since: tuple[int, int] = field(default=(0, 0), init=False)

    @property
    def device(self) -> str:
        return self.loaded.device

    @property
    def dtype(self) -> str:
        return self.loaded.dtype

    def engines(self) -> list[Engine]:
        return [self.engine]

    def inputs(self, params: dict[str, Any]) -> Inputs:
        from llmprof.workloads import vllm_engine

        return vllm_engine.build_inputs(self.loaded, self.spec_of(params))

    def arm(self, params: dict[str, Any]) -> Arm:
        from llmprof.runfile import Run

        inputs = self.inputs(params)
        profiler = self.engine.profiler
        self.since = (len(profiler.steps["begin_ns"]), len(profiler.dropped))
        run = Run(config={}, environment=self.environment)
        described = {"sweep_point": dict(params)}
        return Arm("", self.spec_of(params), self.engine, inputs, run, inputs.loaded, described)

    def close(self, arm: Arm, since_ns: int) -> None:
        """The run's engine steps: the rows its calls added to the profiler's columns; the requests they
        dropped said as warnings."""
        profiler = self.engine.profiler
        steps, dropped = self.since
        arm.run.engine_steps = {name: column[steps:] for name, column in profiler.steps.items()}
        super().close(arm, since_ns)
        for message in profiler.dropped[dropped:]:
            print(f"llmprof: warning: {message}", file=sys.stderr)


def load_grid(axes: dict[str, list[Any]], options: WorkloadOptions) -> Grid:
    """Load the spec's model (and prepare its kernel swaps) or build its engine; raises UsageError when the
    variants cannot fit or be built, or the engine cannot be."""
    from llmprof.capture.environment import capture_environment
    from llmprof.workloads.engines import load

    spec = options.spec
    if spec.engine == "vllm":
        from llmprof.workloads import vllm_engine

        built = vllm_engine.load(spec)
        print(f"llmprof: no roofline with --engine vllm: {vllm_engine.NO_ROOFLINE}", file=sys.stderr)
        engine = vllm_engine.VllmGenerate(built, options.telemetry, spec)
        return EngineGrid(spec, vllm_engine.environment(), built, engine)
    loaded = load(spec)
    return ModelGrid(spec, capture_environment(loaded.model), loaded, _variants(loaded, axes, options))


def _variant_key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    from llmprof.workloads.variants import SWEPT

    return tuple((key, params[key]) for key in SWEPT if key in params)


def _variants(loaded: Any, axes: dict[str, list[Any]], options: WorkloadOptions) -> dict[Any, SweptVariant]:
    """Every combination of the kernel-swap axes, prepared on the loaded model (one without them: the model as
    loaded), by its key; raises UsageError when the copies they need cannot fit or a variant cannot be built."""
    from llmprof.analysis.grid import points
    from llmprof.workloads.engines import engines_for
    from llmprof.workloads.memory import check_copies
    from llmprof.workloads.models import DTYPES
    from llmprof.workloads.sizing import roofline_inputs
    from llmprof.workloads.variants import SWEPT, Variant, own_copies, prepare

    combos = points({key: axes[key] for key in SWEPT if key in axes})
    variants = [Variant.parse("sweep", [f"{k}={v}" for k, v in combo.items()]) for combo in combos]
    model = loaded.model
    if options.spec.memory_check:
        copies = {v.label(): DTYPES[v.dtype] if v.dtype else model.dtype for v in own_copies(variants)}
        check_copies(model, loaded.device, copies)
    prepared = prepare(model, variants)
    engines = engines_for([(p.model, None) for p in prepared], options.spec, options.telemetry)
    out = {}
    for combo, p, engine in zip(combos, prepared, engines):
        p.activate()  # the roofline reads the variant's own model
        out[_variant_key(combo)] = SweptVariant(
            p, engine, roofline_inputs(p.model, loaded.device, options.peaks)
        )
    return out


def _rest(params: dict[str, Any]) -> tuple[Any, ...]:
    """The point less its batch: the points that differ by their batch alone share it."""
    return tuple(v for k, v in sorted(params.items()) if k != "batch_size")
