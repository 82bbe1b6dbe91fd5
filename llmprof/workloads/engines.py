"""The engine seam (docs/architecture.md, "The workload"): what run, ab and sweep call to load a model, attach the
profiler and make one recorded call. Two engines today, both on a transformers model: :class:`Generate`
(``generate()`` under the :class:`~llmprof.capture.profiler.Profiler`'s hooks) and :class:`UserLoop` (the
user's decode loop recording with a :class:`~llmprof.capture.recorder.Recorder`). A new engine is one module
beside them: a loader, a class with these three methods, and its name in ``spec.ENGINES``."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.record import RawRequest
from llmprof.capture.profiler import Profiler, nvml_devices
from llmprof.capture.recorder import Recorder
from llmprof.capture.sampling import make_sampler
from llmprof.workloads import models
from llmprof.workloads.inputs import Inputs
from llmprof.workloads.runner import profiled_call, recorded_call
from llmprof.workloads.spec import WorkloadSpec


@dataclass(frozen=True)
class TelemetryOptions:
    """Whether to sample the devices (NVML, the process) alongside the calls, and how often (None: chosen from
    the probe's measured cost)."""

    enabled: bool = True
    interval: float | None = None


def load(spec: WorkloadSpec) -> models.LoadedModel:
    """The spec's model, loaded for its engine; raises UsageError (ModelLoadError) for a bad model."""
    return models.load_model(
        spec.model, spec.device, spec.dtype, spec.attn_implementation, spec.tp, spec.device_map
    )


class Engine(ABC):
    """One way of making a recorded call on a model instance."""

    model: Any

    @abstractmethod
    def call(self, inputs: Inputs, warmup: bool) -> list[RawRequest]:
        """One call on ``inputs``: its records (one per request it served), flagged warm-up or not; raises
        CaptureError when it recorded none."""

    @abstractmethod
    def attachments(self) -> list[Any]:
        """The context managers that must be entered around the calls (engines sharing one enter it once)."""

    @abstractmethod
    def telemetry(self) -> dict[str, Any] | None:
        """The telemetry sampled alongside the calls so far (None when off)."""

    def kernel_call(self, inputs: Inputs) -> RawRequest:
        """One unmeasured call as the kernel-profiled call reads it: one request whose TOKEN marks end its steps
        (generate()'s, a loop's: the call's own request)."""
        return self.call(inputs, True)[0]

    def steps(self) -> dict[str, list[Any]] | None:
        """An engine's steps recorded so far, as columns (``Run.engine_steps``); None for generate()."""
        return None


class Generate(Engine):
    """``model.generate()`` under the profiler's hooks."""

    def __init__(self, profiler: Profiler):
        self.profiler = profiler
        self.model = profiler.model

    def call(self, inputs: Inputs, warmup: bool) -> list[RawRequest]:
        try:
            return [profiled_call(self.profiler, inputs.tensors, warmup, **inputs.generate_kwargs)]
        finally:
            inputs.restore()

    def attachments(self) -> list[Any]:
        return [self.profiler]

    def telemetry(self) -> dict[str, Any] | None:
        return self.profiler.telemetry


class UserLoop(Engine):
    """The user's decode loop ``loop(model, inputs, recorder)``, recording one request per call. Its telemetry:
    that of ``sampling``, each call bracketed as a request (full resolution inside), or that of ``profiler`` (a
    :class:`Generate` of another variant on the same model), or none."""

    def __init__(
        self,
        loop: Callable[..., Any],
        model: Any,
        spec: WorkloadSpec,
        sampling: Sampling | None = None,
        profiler: Profiler | None = None,
    ):
        self.loop, self.model, self.spec = loop, model, spec
        self.recorder = Recorder.for_model(model)
        self.sampling, self.profiler = sampling, profiler
        self.sampler = None if sampling is None else sampling.sampler

    def call(self, inputs: Inputs, warmup: bool) -> list[RawRequest]:
        call = self.loop if self.sampler is None else self._bracketed
        return [recorded_call(call, self.recorder, self.model, inputs.for_loop(self.spec), warmup)]

    def _bracketed(self, model: Any, inputs: dict[str, Any], recorder: Any) -> Any:
        begin = self.sampler.begin_request()
        try:
            return self.loop(model, inputs, recorder)
        finally:
            self.sampler.end_request(
                begin, 0.0
            )  # figures of no record: the loop's own request is what counts

    def attachments(self) -> list[Any]:
        return [] if self.sampling is None else [self.sampling]

    def telemetry(self) -> dict[str, Any] | None:
        if self.profiler is not None:
            return self.profiler.telemetry
        return None if self.sampler is None else self.sampler.snapshot()


class Sampling(contextlib.AbstractContextManager):
    """A sampler started for the calls and stopped after them."""

    def __init__(self, sampler: Any):
        self.sampler = sampler

    def __enter__(self) -> Any:
        self.sampler.start()
        return self.sampler

    def __exit__(self, *exc: object) -> None:
        self.sampler.stop()


def engines_for(
    variants: list[tuple[Any, Callable[..., Any] | None]], spec: WorkloadSpec, telemetry: TelemetryOptions
) -> list[Engine]:
    """An engine for each ``(model instance, loop or None)``: generate() on the instances with a profiler each
    (shared by the variants on one instance), the loops with a Recorder; a loop's telemetry is the profiler's of
    its instance when one runs there, else a sampler of its own (shared likewise)."""
    profilers: dict[int, Profiler] = {}
    for model, loop in variants:
        if loop is None and id(model) not in profilers:
            profilers[id(model)] = Profiler(
                model, telemetry=telemetry.enabled, sample_interval=telemetry.interval
            )
    samplers: dict[int, Sampling] = {}
    engines: list[Engine] = []
    for model, loop in variants:
        if loop is None:
            engines.append(Generate(profilers[id(model)]))
            continue
        profiler = profilers.get(id(model))
        if profiler is None and telemetry.enabled and id(model) not in samplers:
            samplers[id(model)] = Sampling(make_sampler(nvml_devices(model), telemetry.interval))
        engines.append(UserLoop(loop, model, spec, samplers.get(id(model)), profiler))
    return engines


@contextlib.contextmanager
def attached(engines: list[Engine]) -> Iterator[None]:
    """The engines' attachments entered once each (the profilers' hooks, the samplers) around the calls."""
    with contextlib.ExitStack() as stack:
        for attachment in {id(a): a for engine in engines for a in engine.attachments()}.values():
            stack.enter_context(attachment)
        yield
