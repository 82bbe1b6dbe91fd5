"""``Profiler``: attaches the hooks to a model, drives the compiled timeline, and turns each ``generate()`` call
into a :class:`~llmprof.analysis.record.RawRequest` and its :class:`~llmprof.analysis.metrics.RequestMetrics`."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from llmprof.analysis.record import Label
from llmprof.capture import batching, tokens
from llmprof.capture.hooks import (
    REQUIRED_METHODS,
    InstalledHooks,
    SpeculativeMarkingCriteria,
    TokenMarkingCriteria,
)
from llmprof.capture.recorder import Recorder, Records
from llmprof.capture.sampling import Sampler, make_sampler
from llmprof.capture.sampling.base import checked_interval
from llmprof.capture.timeline import model_devices, timed_devices
from llmprof.errors import CaptureError

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self


class Profiler(Records):
    """Profile every ``generate()`` call of ``model``: one result per call, in call order.

    >>> with llmprof.profile(model) as prof:
    ...     model.generate(**inputs, max_new_tokens=64)
    >>> prof.requests[-1].tpot
    """

    def __init__(
        self,
        model: Any,
        timeline: Any = None,
        telemetry: bool | Sampler = True,
        sample_interval: float | None = None,
    ):
        """``timeline``: a prebuilt :class:`llmprof._core.Timeline` to record into (default: one for the model's
        device, with CUDA events when the model is on a GPU). ``telemetry``: sample the GPUs through NVML (the
        process's CPU and memory on a CPU run) every ``sample_interval`` seconds (default: from its cost), or
        a :class:`llmprof.capture.sampling.Sampler` of your own; False for none."""
        missing = [name for name in REQUIRED_METHODS if not callable(getattr(model, name, None))]
        if missing or not isinstance(model, torch.nn.Module):
            vllm = (
                " (a vLLM engine: llmprof.profile(llm))" if type(model).__module__.startswith("vllm.") else ""
            )
            raise TypeError(
                f"llmprof profiles transformers models with a generate() method (GenerationMixin); "
                f"{type(model).__name__} is not one{vllm}"
            )
        super().__init__()
        self.model = unwrap(model)  # torch.compile(model)'s generate() is the original module's
        self.warmup = False  # while True, recorded requests are flagged as warm-up
        self.active = False  # a call is being recorded (generate() entered, not yet returned)
        self.speculative = False  # ... and it is assisted generation (several tokens a step)
        self.marking: TokenMarkingCriteria | None = None  # ... its token-marking criteria, once built
        self._drafted: list[int] = []  # assisted generation: the candidates each step verified
        self._draft_base: int | None = None  # ... and their length before the first step
        self._drafting = False  # ... while a draft runs (marks of the model's own drafting forwards paused)
        self._calls = 0  # generate() calls of the model in flight, on any thread
        self._calls_lock = threading.Lock()
        self._owner: int | None = None  # the thread of the recorded call
        self._timeline: Any = timeline
        self.recorder: Recorder | None = None  # records the calls, once attached
        self._hooks: InstalledHooks | None = None
        self._prompt_tokens = 0
        self._prompt_rows: int | None = None
        self._prompt_mask: torch.Tensor | None = None
        self._cached = 0  # tokens in the KV cache the call was given
        self._skip_reason: str | None = None
        self._arguments: dict[str, Any] = {}
        self._device: torch.device | None = None  # the first device the timeline records on
        self._gpus: list[torch.device] = []  # every GPU the model is on
        self._telemetry = telemetry
        self._sample_interval = checked_interval(sample_interval)
        self.sampler: Sampler | None = None
        self._counters: dict[str, Any] = {}
        self._begin_ns = 0

    @property
    def telemetry(self) -> dict[str, Any] | None:
        """The telemetry of the run so far (a sampler snapshot), None when telemetry is off."""
        return None if self.sampler is None else self.sampler.snapshot()

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self._hooks is not None

    @property
    def backend(self) -> str | None:
        """``"cuda"`` (device events) or ``"host"`` (host stamps only), once attached."""
        return None if self._timeline is None else self._timeline.backend

    @property
    def timeline(self) -> Any:
        """The compiled timeline of the recorder (the hooks' per-step calls go straight to it)."""
        return self._timeline

    @property
    def armed(self) -> bool:
        """A call's generation loop is hooked: its forward and token marks count."""
        return self._timeline is not None and self._timeline.armed

    @property
    def steps(self) -> int:
        """Steps whose token was marked in the call being recorded (or the last one)."""
        return 0 if self._timeline is None else self._timeline.step

    def attach(self) -> Profiler:
        """Install the hooks. Raises CaptureError (a RuntimeError) if this or another Profiler is already attached
        to the model, or if the model's GPU cannot be timed."""
        if self.attached:
            raise CaptureError("this Profiler is already attached")
        if getattr(self.model, "_llmprof_profiler", None) is not None:
            raise CaptureError("another llmprof Profiler is already attached to this model; detach it first")
        # a device_map model over several GPUs: one lane per GPU (docs/architecture.md, "Several GPUs")
        devices = timed_devices(self.model)
        self._gpus = [d for d in devices if d.type == "cuda"]
        self._device = devices[0]
        self.recorder = Recorder(devices, timeline=self._timeline)
        self._timeline = self.recorder.timeline
        if isinstance(self._telemetry, Sampler):
            self.sampler = self._telemetry
        elif self._telemetry:
            self.sampler = make_sampler(nvml_devices(self.model), self._sample_interval)
        if self.sampler is not None:
            self.sampler.start()  # before the hooks: if it fails, the model is left untouched
        self._hooks = InstalledHooks(self.model, self)
        self.model._llmprof_profiler = self
        return self

    def detach(self) -> None:
        """Remove every hook: the model is left exactly as before :meth:`attach`. Idempotent."""
        if self._hooks is None:
            return
        self._hooks.remove()
        self._hooks = None
        del self.model._llmprof_profiler
        if self.sampler is not None:
            self.sampler.stop()

    def __enter__(self) -> Self:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- what the hooks report (once per call; the per-step calls go to the timeline) --------------------
    def enter(self) -> bool:
        """A generate() call was entered: True when it is the only one in flight (it is then recorded). Any
        other call, nested inside the recorded one or on another thread, runs unrecorded, and the recorded
        call is dropped, since its marks would mix both."""
        with self._calls_lock:
            self._calls += 1
            alone = self._calls == 1
        if alone:
            return True
        if self._drafting and threading.get_ident() == self._owner:
            return False  # self-speculation: the model drafts for itself, inside the recorded call's draft
        if self.active and self._skip_reason is None:
            self._skip_reason = (
                "a generate() nested inside this one on the same model (other than early exit's drafts: a"
                " generate() that calls itself) is not profiled"
                if threading.get_ident() == self._owner
                else "another thread called generate() on the same model during this call, which is not profiled"
            )
        if threading.get_ident() != self._owner:
            warnings.warn(
                "llmprof: generate() called while another generate() of this model runs; the call is not"
                " recorded (profile one call at a time per model)",
                stacklevel=3,
            )
        return False

    def leave(self) -> None:
        """A generate() call returned or raised."""
        with self._calls_lock:
            self._calls -= 1

    def begin(self, arguments: dict[str, Any]) -> None:
        """generate() was entered with these (named) arguments: open the recorder's request, stamping ``t0``."""
        inputs = tokens.input_tensor(arguments)
        self._prompt_tokens = int(inputs.shape[1]) if inputs is not None and inputs.dim() >= 2 else 0
        self._prompt_rows = int(inputs.shape[0]) if inputs is not None and inputs.dim() >= 2 else None
        mask = arguments.get("attention_mask")
        self._prompt_mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        self._cached = tokens.cached_tokens(arguments)  # before the call: generate() grows the cache
        self.marking = None
        self._skip_reason = tokens.unsupported_call(arguments)
        self.speculative = False
        self._drafted, self._draft_base = [], None
        self._arguments = arguments  # until the call ends: what decides its generation mode
        self._owner = threading.get_ident()
        self._start_counters()
        self.active = True
        self.recorder.begin(
            tokens.max_steps(self.model, arguments, self._prompt_tokens), self._prompt_rows or 0
        )

    def configure(self, generation_config: Any) -> bool:
        """generate() built its stopping criteria from the final config: can this call be profiled?"""
        if self._drafting:  # the draft's own loop (early exit): not this call's
            return False
        if self._skip_reason is None and self._timeline.armed:  # a second loop in one call
            self._skip_reason = (
                "generate() ran several generation passes (long-form audio, temperature fallback), which are not"
                " profiled"
            )
        if self._skip_reason is not None:  # a call that is not recorded marks nothing more
            self._timeline.arm(False)
            return False
        reason = tokens.unsupported_generation(generation_config, self._arguments)
        if reason is not None:
            self._skip_reason = f"{reason} is not profiled (greedy, sampling and assisted generation are)"
            return False
        self.speculative = tokens.generation_mode(generation_config, self._arguments) == tokens.ASSISTED
        self._timeline.arm(True)
        max_length = getattr(generation_config, "max_length", None)
        rows = (self._prompt_rows or 1) * (getattr(generation_config, "num_return_sequences", 1) or 1)
        # the final bound, prompt included: room for its new tokens (begin reserved most), and their flags
        self.recorder.reserve(max(max_length - self._prompt_tokens, 0) if max_length else 0, rows)
        return True

    def drafting(self, running: bool) -> None:
        """Assisted generation: a draft starts or ends. While it runs, the model's forwards are not the step's
        (early exit drafts with the model itself, through a nested generate())."""
        self._drafting = running
        self._timeline.arm(not running and self._skip_reason is None)

    def on_draft(self, length: int, drafted: int) -> None:
        """Assisted generation: ``drafted`` candidates were drafted after ``length`` tokens, for the next step."""
        if self._draft_base is None:
            self._draft_base = length
        self._drafted.append(drafted)

    def add_batch(self, outputs: dict[str, Any]) -> None:
        """Continuous batching returned: one record per finished request, from its own token times."""
        if not batching.PERF_COUNTER_IS_MONOTONIC:
            warnings.warn(
                "llmprof: continuous batching stamps its token times on a clock other than llmprof's here;"
                " the batch is not recorded",
                stacklevel=3,
            )
            return
        for output in outputs.values():
            record = batching.batch_request(output, self.warmup)
            if record is not None:
                self.records.append(record)

    def end(self, output: Any) -> None:
        """generate() returned: stamp ``t_end``, resolve device times, count real tokens, keep the record (its
        metrics are computed when :attr:`requests` is read). Never raises into the caller's generate(): a
        request that cannot be measured is dropped with a warning."""
        self.active = self._drafting = False
        self._arguments = {}
        counters = self._end_counters()
        capture = self.recorder.finish()
        marking, self.marking = self.marking, None
        if self._skip_reason is not None:
            warnings.warn(f"llmprof: {self._skip_reason}; the call is not recorded", stacklevel=3)
            return
        if capture.dropped:
            warnings.warn(
                f"llmprof: the timeline overflowed ({capture.dropped} marks dropped); the call is not recorded",
                stacklevel=3,
            )
            self._timeline.reserve(2 * self._timeline.capacity)
            return
        per_step = None
        if capture.steps and (
            capture.flags_error or capture.flags is None or len(capture.flags) != capture.steps
        ):
            broken = f"its finished flags cannot be read ({capture.flags_error or 'not kept at every step'})"
            generated: list[int] = []
        elif self.speculative:
            grown = tokens.output_length(output) - (self._draft_base or 0)
            lengths = marking.lengths if isinstance(marking, SpeculativeMarkingCriteria) else []
            counted = tokens.speculative_tokens(
                self._draft_base, lengths, capture.flags, grown if grown > 0 else None
            )
            per_step, generated = counted if counted is not None else (None, [])
            broken = None if counted is not None else "the steps of assisted generation do not add up"
        else:
            start = marking.start_length if marking is not None else None
            kept = tokens.generated_length(output, start, capture.steps)
            generated = tokens.tokens_per_sequence(capture.flags, kept)
            broken = _broken_invariant(capture.steps, kept, output)
        if broken is None and (not generated or max(generated) == 0):
            broken = "generate() produced no token"
        if broken is not None:
            warnings.warn(f"llmprof: {broken}; the call is not recorded", stacklevel=3)
            return
        self.records.append(
            capture.record(
                generated,
                self._prompt_tokens,
                prefill_tokens=tokens.prefill_tokens(
                    self._prompt_mask, self._prompt_rows, self._prompt_tokens, self._cached
                ),
                cached_tokens=self._cached,
                warmup=self.warmup,
                telemetry=counters,
                warnings=_flags(capture.label),
                tokens_per_step=per_step,
                drafted_per_step=list(self._drafted) if per_step is not None else None,
            )
        )

    def _start_counters(self) -> None:
        """Read the counters a request's telemetry is measured against (before ``t0`` is stamped)."""
        for gpu in self._gpus:
            torch.cuda.reset_peak_memory_stats(gpu)
        self._counters = self.sampler.begin_request() if self.sampler is not None else {}
        self._begin_ns = time.monotonic_ns()

    def _end_counters(self) -> dict[str, Any]:
        """Per-request telemetry counters: energy or CPU time, and torch's memory peaks on the GPUs (summed
        over the GPUs of a device_map model)."""
        duration_s = (time.monotonic_ns() - self._begin_ns) / 1e9
        counters = self.sampler.end_request(self._counters, duration_s) if self.sampler is not None else {}
        if self._gpus:
            counters["torch_peak_allocated_bytes"] = sum(
                torch.cuda.max_memory_allocated(g) for g in self._gpus
            )
            counters["torch_peak_reserved_bytes"] = sum(torch.cuda.max_memory_reserved(g) for g in self._gpus)
        return counters

    def abort(self) -> None:
        """generate() raised: forget the partial request."""
        self.active = self._drafting = False
        self._arguments = {}
        self.marking = None
        self.recorder.abort()


@contextlib.contextmanager
def profile(model: Any, **options: Any) -> Iterator[Any]:
    """Context manager: profile ``model`` inside the block, detach on exit (even on error). ``options`` are
    :class:`Profiler`'s (``telemetry``, ``sample_interval``, ``timeline``); a ``vllm.LLM`` (or ``LLMEngine``) gets a
    :class:`~llmprof.capture.vllm_engine.VllmProfiler` (``telemetry``, ``sample_interval``)."""
    from llmprof.capture.vllm_engine import VllmProfiler, is_vllm

    profiler = VllmProfiler(model, **options) if is_vllm(model) else Profiler(model, **options)
    with profiler:
        yield profiler


def unwrap(model: Any) -> Any:
    """The module that owns generate(): ``model``, or the original module inside ``torch.compile(model)``."""
    while isinstance(getattr(model, "_orig_mod", None), torch.nn.Module) and model is not model._orig_mod:
        model = model._orig_mod
    return model


def _broken_invariant(steps: int, kept: int | None, output: Any) -> str | None:
    """Why a call's marks cannot be its tokens, checked after it returned (None when they can): no step was
    marked although tokens came out, or the sequences grew by more tokens than steps were marked."""
    if steps == 0 and tokens.output_length(output):
        return (
            "generate() ran no generation loop that llmprof hooks (continuous batching, or a generate() that"
            " hands its loop to an inner model llmprof does not know)"
        )
    if kept is not None and kept > steps:
        return (
            f"the sequences grew by {kept} tokens in {steps} marked steps (several tokens per step: speculative"
            " or assisted decoding), which is not profiled"
        )
    return None


def _flags(labels: list[int]) -> list[str]:
    """What a recorded call lacks but can be measured without: the flags saved with its record."""
    if Label.FORWARD_BEGIN not in labels:
        missing = (
            "no forward of the model was marked (a forward compiled or wrapped where llmprof's hooks cannot"
            " see it): the breakdown is missing"
        )
        return [missing]
    return []


def cuda_devices(model: torch.nn.Module) -> list[int]:
    """The CUDA device indices the model's parameters and buffers are on, the forward's first (a device_map
    model spans several)."""
    return [d.index for d in model_devices(model) if d.type == "cuda"]


def nvml_devices(model: torch.nn.Module) -> list[int | str]:
    """How NVML names every GPU the model's parameters and buffers are on, in order of first use: its UUID
    (right under CUDA_VISIBLE_DEVICES), else its index."""
    out: list[int | str] = []
    for index in cuda_devices(model):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        out.append(f"GPU-{uuid}" if uuid is not None else index)
    return out
