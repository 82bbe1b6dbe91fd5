"""``Recorder``: the one way llmprof records a request, on the compiled timeline. Its public API serves a decode
loop of one's own (a gpt-fast-style compiled loop, a loop around a custom kernel, another engine's step); the
``generate()`` hooks are another client of the same recorder::

    rec = llmprof.Recorder.for_model(model)        # or llmprof.Recorder(device="cuda")
    with rec.request(batch=B, prompt_tokens=P):    # t0 .. t_end
        with rec.prefill():                        # the prefill forward
            logits = model(prompt)
        rec.token(finished=mask)                   # T_1; per-sequence finished flags (a device tensor is fine)
        for _ in range(n - 1):
            with rec.forward():
                logits = model(next_token)
            rec.token(finished=mask, tokens=1)     # T_k; a step may append several tokens (speculative decoding)
    rec.requests[-1].tpot; rec.save("run.json")    # then: llmprof report / compare as usual

The hot path (``forward()``, ``token()``) is one call into the extension each: the request's state (open,
armed, step counter, open forward) lives in the timeline, and the finished flags are copied there without a
sync into one preallocated buffer (pinned memory on a GPU), read once after the request. Misuse (a token
outside a request, a request inside a request, a token while a forward is open) raises CaptureError at once,
never records a wrong number.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import sys
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from llmprof._core import Span
from llmprof.analysis.config_keys import config_of
from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.record import Label, RawRequest
from llmprof.capture import timeline as timelines
from llmprof.capture import tokens as counting
from llmprof.errors import CaptureError


class Records:
    """The records a recording client keeps, in order, and their metrics, computed on first access (outside
    the recorded calls): shared by :class:`Recorder` and the ``generate()`` profiler."""

    def __init__(self) -> None:
        self.records: list[RawRequest] = []
        self._metrics: list[RequestMetrics] = []

    @property
    def requests(self) -> list[RequestMetrics]:
        """Metrics of every recorded request, in order."""
        for raw in self.records[len(self._metrics) :]:
            self._metrics.append(compute_request(raw))
        return self._metrics


@dataclass
class Capture:
    """What the timeline holds of one finished request, read once after it: the marks (device times mapped
    onto the host clock, None for host-only marks), the steps and the tokens each appended, and the finished
    flags (``steps x batch``, None when none were kept, with ``flags_error`` saying why they cannot be used)."""

    label: list[int]
    step: list[int]
    host_ns: list[int]
    device_ns: list[int | None]
    # several GPUs (a device_map model): every lane's time of each mark (device_ns is the latest lane's)
    lane_ns: list[list[int]] | None
    devices: list[str]  # the lanes' devices, in order
    backend: str
    sync_uncertainty_ns: int
    dropped: int
    steps: int
    step_tokens: list[int]
    flags: np.ndarray | None
    flags_error: str
    warnings: list[str] = field(default_factory=list)  # what the request's times may hold besides its work

    def first_finished(self) -> list[int] | None:
        """Per sequence, the step at which its flag was first set, else the last step (None without flags)."""
        return None if self.flags is None else counting.first_finished(self.flags)

    def record(self, tokens_per_sequence: list[int], prompt_tokens: int, **fields: Any) -> RawRequest:
        """The run file's record of this request (``fields``' warnings after the capture's own)."""
        fields["warnings"] = self.warnings + fields.get("warnings", [])
        return RawRequest(
            label=self.label,
            step=self.step,
            host_ns=self.host_ns,
            device_ns=self.device_ns,
            tokens_per_sequence=tokens_per_sequence,
            prompt_tokens=prompt_tokens,
            backend=self.backend,
            sync_uncertainty_ns=self.sync_uncertainty_ns,
            device_forward_ends=self.device_forward_ends(),
            **fields,
        )

    def device_forward_ends(self) -> dict[str, list[int]] | None:
        """Several GPUs: per device, when each forward's work on it was done (None on one device)."""
        if self.lane_ns is None:
            return None
        rows = [row for label, row in zip(self.label, self.lane_ns) if label == Label.FORWARD_END]
        return {device: [row[lane] for row in rows] for lane, device in enumerate(self.devices)}


# what Recorder.request() accepts, checked where the counts enter rather than where they would overflow
MAX_BATCH = 1 << 20
MAX_TOKENS = (1 << 31) - 1
MAX_STEPS = 1 << 24  # room for the steps is reserved before t0

COMPILED = (
    "torch.compile compiled new graphs during the call: its times include compiling (more warm-ups: --warmup N"
    " or auto)"
)


def compiled_graphs() -> int:
    """How many graphs torch.compile has compiled in this process so far (0 before it is first used: its
    counters are read only once torch._dynamo is imported, never importing it)."""
    utils = sys.modules.get("torch._dynamo.utils")
    return 0 if utils is None else utils.counters["stats"]["unique_graphs"]


RECOMPILE_LIMIT = (
    "torch.compile hit its recompile limit since profiling began (torch._dynamo.config.recompile_limit): what it"
    " gave up on runs eagerly, slower than compiled"
)


def recompile_limit_hits() -> int:
    """How many times torch.compile has given up on a function for its recompile limit in this process (read
    from dynamo's counters once torch._dynamo is imported, never importing it)."""
    utils = sys.modules.get("torch._dynamo.utils")
    reasons = {} if utils is None else utils.counters.get("unimplemented", {})
    return sum(count for reason, count in reasons.items() if "recompile limit" in reason.lower())


def _count(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int (anything with ``__index__`` but a bool) from ``low`` to ``high``, else CaptureError."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        raise CaptureError(f"Recorder.request(): {name} must be an int from {low} to {high}, got {value!r}")
    return number


def _not_finite(value: Any, where: str = "config") -> str | None:
    """The first place in ``value`` (dicts, lists, numbers) holding a NaN or an infinity, as ``config['key']``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list | tuple)
        else ()
    )
    for key, item in items:
        found = _not_finite(item, f"{where}[{key!r}]")
        if found:
            return found
    return None


class Recorder(Records):
    """Records the requests of a decode loop: one :class:`~llmprof.analysis.record.RawRequest` per
    :meth:`request` block, in order (``records``), and their metrics (``requests``)."""

    def __init__(
        self, device: str | torch.device | Sequence[str | torch.device] = "cpu", timeline: Any = None
    ):
        """``device``: where the loop's work runs (CUDA events on a GPU, host stamps otherwise); several GPUs
        (a device_map model) for one lane each, the first where a forward starts. ``timeline``: a prebuilt
        :class:`llmprof._core.Timeline` to record into."""
        super().__init__()
        many = not isinstance(device, (str, torch.device))
        self.devices = [torch.device(d) for d in device] if many else [torch.device(device)]
        if not self.devices:
            raise CaptureError("Recorder(device=[]): give at least one device")
        self.device = self.devices[0]
        self.timeline = timeline if timeline is not None else timelines.make_timeline(self.devices)
        if self.timeline.backend == "cuda":
            self.timeline.calibrate()
        self._forward: Span = self.timeline.span(False)
        self._prefill: Span = self.timeline.span(True)
        self._token = self.timeline.token
        self._graphs = 0  # compiled_graphs() when the open request began
        self._limit_hits = recompile_limit_hits()  # those before this recorder are not its requests' concern
        self._model: weakref.ref[torch.nn.Module] | None = None  # for_model(): described in save()'s run

    @classmethod
    def for_model(cls, model: torch.nn.Module, **options: Any) -> Recorder:
        """A recorder on the devices of ``model``'s parameters (one lane per GPU of a device_map model); the
        runs it saves name the model, its dtype and device."""
        recorder = cls(timelines.timed_devices(model), **options)
        recorder._model = weakref.ref(model)
        return recorder

    @property
    def backend(self) -> str:
        """``"cuda"`` (device events) or ``"host"`` (host stamps only)."""
        return self.timeline.backend

    # -- the public API ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def request(
        self, batch: int = 1, prompt_tokens: int = 0, max_steps: int = 4096, prefill_tokens: int | None = None
    ) -> Iterator[Recorder]:
        """One request of ``batch`` sequences of ``prompt_tokens`` each: ``t0`` on entry, ``t_end`` on exit.
        ``max_steps``: room reserved for its steps before ``t0`` (a request with more raises at its end). A
        request that raises is forgotten."""
        if self.timeline.open:
            raise CaptureError("Recorder.request() inside a request: end the first one first")
        batch, prompt_tokens, max_steps = (
            _count("batch", batch, 1, MAX_BATCH),
            _count("prompt_tokens", prompt_tokens, 0, MAX_TOKENS),
            _count("max_steps", max_steps, 1, MAX_STEPS),
        )
        if prefill_tokens is not None:
            prefill_tokens = _count("prefill_tokens", prefill_tokens, 0, MAX_TOKENS * MAX_BATCH)
        self.begin(max_steps, batch)
        self.timeline.arm(True)
        try:
            yield self
        except BaseException:
            self.abort()
            raise
        if self.timeline.in_forward:
            self.abort()
            raise CaptureError("the request ended inside a forward() or prefill() block")
        capture = self.finish()
        self.records.append(
            capture.record(
                self._token_counts(capture, batch, max_steps),
                prompt_tokens,
                prefill_tokens=prefill_tokens,
                tokens_per_step=capture.step_tokens if max(capture.step_tokens) > 1 else None,
            )
        )

    def prefill(self) -> Span:
        """``with rec.prefill():`` the prefill forward, the span before the first token."""
        return self._prefill

    def forward(self) -> Span:
        """``with rec.forward():`` a forward span: the forward that produces the next step's tokens."""
        return self._forward

    def token(self, finished: Any = None, tokens: int = 1) -> None:
        """``T_k``: the step's tokens exist now. ``finished``: the per-sequence flags of the sequences done
        after this step (a bool tensor on the loop's device, or a list; copied without a sync, read after the
        request); ``tokens``: how many this step appended to each sequence (more than one in speculative
        decoding)."""
        self._token(finished, tokens)

    def save(self, path: str, config: dict[str, Any] | None = None) -> None:
        """Save the recorded requests as a run file (``report`` and ``compare`` read it as any other). Its
        config holds the device (and for :meth:`for_model` the model's name and dtype), then ``config``."""
        from llmprof.capture.environment import capture_environment
        from llmprof.errors import RunFormatError
        from llmprof.runfile import Run, check_config, save_run

        bad = _not_finite(config or {})
        if bad:
            raise CaptureError(
                f"Recorder.save(config=...): {bad} is not a finite number (a run file holds none)"
            )
        model = self._model() if self._model is not None else None
        known = [("device", str(self.device))]
        if model is not None:
            name = getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
            dtype = next(model.parameters()).dtype
            known += [("model", name), ("dtype", str(dtype).removeprefix("torch."))]
        run = Run(
            config={**config_of(known), **(config or {})},
            environment=capture_environment(model),
            records=self.records,
        )
        try:
            check_config(run.config, run.records)  # contradicting the requests: refused now, not when loaded
        except RunFormatError as exc:
            raise CaptureError(f"Recorder.save(config=...): {exc}") from None
        save_run(run, path)

    # -- what a recording client builds on (the generate() hooks) -----------------------------------------
    def begin(self, max_steps: int, batch: int = 0) -> None:
        """Open a request with room for ``max_steps`` steps of ``batch`` flags (0: not known yet): stamps
        ``t0``. The client arms the timeline when its marks start to count."""
        timelines.reserve(self.timeline, max_steps)
        timelines.follow_stream(self.timeline, self.devices)
        self._graphs = compiled_graphs()
        self.timeline.begin_request(max_steps, batch)

    def reserve(self, max_steps: int, batch: int = 0) -> None:
        """More room for the open request, once its bound is known (before its first step)."""
        timelines.reserve(self.timeline, max_steps)
        self.timeline.reserve_steps(max_steps, batch)

    def finish(self) -> Capture:
        """Stamp ``t_end``, wait for the device and read what the request recorded."""
        timeline = self.timeline
        timeline.end_request()
        # the reference after the call: its events are mapped through it (or the call's anchor) with the drift
        # measured since the previous one (docs/architecture.md, "Clock")
        timeline.calibrate()
        resolved = timelines.resolved(timeline)
        flags = timeline.flags
        rows, batch = timeline.flags_shape
        return Capture(
            label=resolved["label"],
            step=resolved["step"],
            host_ns=resolved["host_ns"],
            device_ns=resolved["device_ns"],
            lane_ns=resolved["lane_ns"],
            devices=[f"cuda:{i}" for i in timeline.devices],
            backend=resolved["backend"],
            sync_uncertainty_ns=resolved["sync_uncertainty_ns"],
            dropped=resolved["dropped"],
            steps=timeline.step,
            step_tokens=timeline.step_tokens,
            flags=None if flags is None else np.frombuffer(flags, dtype=np.uint8).reshape(rows, batch),
            flags_error=timeline.flags_error,
            warnings=[COMPILED] * (compiled_graphs() != self._graphs)
            + [RECOMPILE_LIMIT] * (recompile_limit_hits() > self._limit_hits),
        )

    def abort(self) -> None:
        """Forget the open request."""
        self.timeline.clear()

    def _token_counts(self, capture: Capture, batch: int, max_steps: int) -> list[int]:
        """``n_i``: the tokens through the step at which sequence i was first finished, else all of them."""
        if not capture.steps:
            raise CaptureError("the request recorded no token: call token() after each step")
        if capture.dropped or len(capture.step_tokens) < capture.steps or capture.steps > max_steps:
            raise CaptureError(
                f"the request ran {capture.steps} steps, more than it reserved ({max_steps}): give request() a"
                " larger max_steps"
            )
        if capture.flags_error:
            raise CaptureError(capture.flags_error)
        reached = list(itertools.accumulate(capture.step_tokens))
        first = capture.first_finished()
        if first is None:
            return [reached[-1]] * batch
        if len(capture.flags) != capture.steps:
            raise CaptureError(
                "token(finished=...) was given at some steps only: give it at every step or none"
            )
        return [reached[step - 1] for step in first]
