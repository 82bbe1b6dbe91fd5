"""``Recorder``: the public recording API for a decode loop of one's own (a gpt-fast-style compiled loop, a loop
around a custom kernel, another engine's step), on the same compiled timeline, metrics and run files as the
``generate()`` hooks::

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

The hot path (``forward()``, ``token()``) stamps the timeline and keeps the flags it is given: no sync, no
device value read. Misuse (a token outside a request, a request inside a request, a token while a forward is
open) raises CaptureError at once, never records a wrong number.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch

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


class Recorder(Records):
    """Records the requests of a decode loop: one :class:`~llmprof.analysis.record.RawRequest` per
    :meth:`request` block, in order (``records``), and their metrics (``requests``)."""

    def __init__(self, device: str | torch.device = "cpu", timeline: Any = None):
        """``device``: where the loop's work runs (CUDA events on a GPU, host stamps otherwise). ``timeline``:
        a prebuilt :class:`llmprof._core.Timeline` to record into."""
        super().__init__()
        self.device = torch.device(device)
        self._timeline = timeline if timeline is not None else timelines.make_timeline(self.device)
        if self._timeline.backend == "cuda":
            self._timeline.calibrate()
        self._mark = self._timeline.mark
        self._open = False  # inside a request
        self._in_forward = False
        self._steps = 0
        self._tokens: list[int] = []  # tokens each step appended
        self._finished: list[Any] = []  # each step's per-sequence finished flags, read after the request
        self._batch = 1

    @classmethod
    def for_model(cls, model: torch.nn.Module, **options: Any) -> Recorder:
        """A recorder on the device of ``model``'s parameters."""
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return cls(device, **options)

    @property
    def backend(self) -> str:
        """``"cuda"`` (device events) or ``"host"`` (host stamps only)."""
        return self._timeline.backend

    @contextlib.contextmanager
    def request(
        self, batch: int = 1, prompt_tokens: int = 0, max_steps: int = 4096, prefill_tokens: int | None = None
    ) -> Iterator[Recorder]:
        """One request of ``batch`` sequences of ``prompt_tokens`` each: ``t0`` on entry, ``t_end`` on exit.
        ``max_steps``: room reserved for its steps before ``t0`` (more is still recorded, dropped past the
        capacity with a warning). A request that raises is forgotten."""
        if self._open:
            raise CaptureError("Recorder.request() inside a request: end the first one first")
        if batch < 1 or prompt_tokens < 0:
            raise CaptureError(
                f"a request needs batch >= 1 and prompt_tokens >= 0, got {batch} and {prompt_tokens}"
            )
        timeline = self._timeline
        timeline.clear()
        timelines.reserve(timeline, max_steps)
        timelines.follow_stream(timeline, self.device)
        self._open, self._in_forward, self._steps, self._batch = True, False, 0, batch
        self._tokens, self._finished = [], []
        timeline.anchor()
        timeline.mark_host(Label.REQUEST_START, 0)
        try:
            yield self
        except BaseException:
            self._open = False
            timeline.clear()
            raise
        if self._in_forward:
            self._open = False
            raise CaptureError("the request ended inside a forward() or prefill() block")
        timeline.mark_host(Label.REQUEST_END, self._steps)
        self._open = False
        self._finish(prompt_tokens, prefill_tokens)

    @contextlib.contextmanager
    def prefill(self) -> Iterator[None]:
        """The prefill forward: the span before the first token."""
        if self._steps:
            raise CaptureError("prefill() after the first token: use forward() for decode steps")
        with self.forward():
            yield

    @contextlib.contextmanager
    def forward(self) -> Iterator[None]:
        """A forward span: the forward that produces the next step's tokens."""
        if not self._open:
            raise CaptureError("forward() outside a request: open one with Recorder.request()")
        if self._in_forward:
            raise CaptureError("forward() inside a forward()")
        self._in_forward = True
        self._mark(Label.FORWARD_BEGIN, self._steps)
        try:
            yield
        finally:
            self._mark(Label.FORWARD_END, self._steps)
            self._in_forward = False

    def token(self, finished: Any = None, tokens: int = 1) -> None:
        """``T_k``: the step's tokens exist now. ``finished``: the per-sequence flags of the sequences done
        after this step (a bool tensor on any device, or a list; read only after the request); ``tokens``: how
        many this step appended to each sequence (more than one in speculative decoding)."""
        if not self._open:
            raise CaptureError("token() outside a request: open one with Recorder.request()")
        if self._in_forward:
            raise CaptureError("token() inside a forward() block: the forward must end before its token")
        if tokens < 1:
            raise CaptureError(f"a step appends at least one token, got {tokens}")
        self._steps += 1
        self._mark(Label.TOKEN, self._steps)
        self._tokens.append(tokens)
        if finished is not None:
            self._finished.append(finished)

    def _finish(self, prompt_tokens: int, prefill_tokens: int | None) -> None:
        """Resolve the request's marks and count its tokens: a request with no token is not recorded."""
        timeline = self._timeline
        timeline.calibrate()
        resolved = timeline.resolve()
        if not self._steps:
            raise CaptureError("the request recorded no token: call token() after each step")
        if resolved["dropped"]:
            raise CaptureError(
                f"the request had more steps than the {timeline.capacity // timelines.MARKS_PER_STEP} reserved:"
                " give request() a larger max_steps"
            )
        counts = self._token_counts()
        self.records.append(
            RawRequest(
                label=resolved["label"],
                step=resolved["step"],
                host_ns=resolved["host_ns"],
                device_ns=resolved["device_ns"],
                tokens_per_sequence=counts,
                prompt_tokens=prompt_tokens,
                prefill_tokens=prefill_tokens,
                backend=resolved["backend"],
                sync_uncertainty_ns=resolved["sync_uncertainty_ns"],
                tokens_per_step=list(self._tokens) if max(self._tokens) > 1 else None,
            )
        )

    def _token_counts(self) -> list[int]:
        """``n_i``: the tokens through the step at which sequence i was first finished, else all of them."""
        reached = list(itertools.accumulate(self._tokens))
        if not self._finished:
            return [reached[-1]] * self._batch
        if len(self._finished) != self._steps:
            raise CaptureError(
                "token(finished=...) was given at some steps only: give it at every step or none"
            )
        flags = [torch.as_tensor(f, dtype=torch.bool).reshape(-1).cpu() for f in self._finished]
        if any(f.numel() != self._batch for f in flags):
            raise CaptureError(f"finished flags must hold one flag per sequence ({self._batch})")
        return [reached[step - 1] for step in counting.tokens_per_sequence(flags, None)]

    def save(self, path: str, config: dict[str, Any] | None = None) -> None:
        """Save the recorded requests as a run file (``report`` and ``compare`` read it as any other)."""
        from llmprof.capture.environment import capture_environment
        from llmprof.runfile import Run, save_run

        save_run(
            Run(config=dict(config or {}), environment=capture_environment(), records=self.records), path
        )
