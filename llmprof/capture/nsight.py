"""Ranges for Nsight Systems on one call: an NVTX range per request and per step (``--nvtx``), and
``cuProfilerStart``/``cuProfilerStop`` around chosen decode steps (``--cuda-profiler-range``), so that
``nsys profile --capture-range=cudaProfilerApi`` captures exactly those steps (docs/architecture.md, "Nsight").

The compiled timeline calls the observer right after the marks where a step opens (its first forward) and
closes (its token), so the ranges are llmprof's own steps, in generate() and in a decode loop of one's own
alike. It is set for that one call only; the measured calls pay one test per mark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from llmprof._core import cuda_driver_status, cuda_profiler_range, set_step_observer
from llmprof.analysis.record import Label

REQUEST_RANGE = "llmprof request"


class Nvtx(Protocol):
    """What is used of ``torch.cuda.nvtx``."""

    def range_push(self, msg: str) -> Any: ...

    def range_pop(self) -> Any: ...


def step_name(step: int) -> str:
    """The NVTX range name of step ``step`` (step 1 is the prefill and its first token)."""
    return "llmprof prefill (step 1)" if step == 1 else f"llmprof decode step {step}"


class StepRanges:
    """The observer of one call: NVTX ranges (request, then each step from its first forward to its token)
    through ``nvtx``; ``profiler(start)`` called at the first forward of decode step ``window[0]`` and after
    the token of ``window[1]`` (or at the request's end, if it ends before). A failing call is kept in
    ``errors`` and turns its part off; nothing is raised into the profiled call."""

    def __init__(
        self,
        nvtx: Nvtx | None = None,
        profiler: Callable[[bool], None] | None = None,
        window: tuple[int, int] | None = None,
    ):
        self.nvtx = nvtx
        self.profiler = profiler if window is not None else None
        self.window = window
        self.errors: list[str] = []
        self.started = self.stopped = False
        self._depth = 0  # NVTX ranges open: the request's, and the step's
        self._pushing = True  # False after a failed push: no new range
        self._step: int | None = None  # the step under way (from its first forward to its token)
        self._step_range = False  # its NVTX range was opened

    def __call__(self, label: int, step: int) -> None:
        if label == Label.REQUEST_START:
            self._push(REQUEST_RANGE)
        elif label == Label.FORWARD_BEGIN and self._step != step + 1:
            self._step = step + 1
            self._step_range = self._push(step_name(self._step))
            if self.window is not None and self._step == self.window[0]:
                self._profile(True)
        elif label == Label.TOKEN and self._step == step:
            self._step = None
            if self._step_range:
                self._pop()
            if self.window is not None and step >= self.window[1]:
                self._profile(False)
        elif label == Label.REQUEST_END:
            while self._depth:
                self._pop()
            self._step = None
            self._profile(False)

    def _push(self, name: str) -> bool:
        """Whether a range was opened."""
        if self.nvtx is None or not self._pushing:
            return False
        if self._guard("NVTX range_push", self.nvtx.range_push, name):
            self._depth += 1
            return True
        self._pushing = False  # no new range; the open ones are still closed
        return False

    def _pop(self) -> None:
        if self.nvtx is None or not self._depth:
            return
        self._depth -= 1
        if not self._guard("NVTX range_pop", self.nvtx.range_pop):
            self.nvtx, self._depth = None, 0

    def _profile(self, start: bool) -> None:
        due = not self.started if start else self.started and not self.stopped
        if self.profiler is None or not due:
            return
        if not self._guard("cuProfilerStart" if start else "cuProfilerStop", self.profiler, start):
            self.profiler = None
        elif start:
            self.started = True
        else:
            self.stopped = True

    def _guard(self, what: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Whether ``fn(*args)`` succeeded; its error is kept in ``errors``."""
        try:
            fn(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - kept and said after the call; the call itself goes on
            self.errors.append(f"{what}: {exc}")
            return False


@contextlib.contextmanager
def observing(ranges: StepRanges) -> Iterator[StepRanges]:
    """``ranges`` observes every timeline's step marks inside the block (one call at a time)."""
    set_step_observer(ranges)
    try:
        yield ranges
    finally:
        set_step_observer(None)


def why_unavailable(device: Any, profiler_range: bool) -> str | None:
    """Why ``--nvtx``/``--cuda-profiler-range`` can do nothing for a model on ``device`` (None when they can)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or not torch.cuda.is_available():
        return f"the model runs on {device}, not on a CUDA device: Nsight has no GPU work to capture"
    if profiler_range:
        ok, message = cuda_driver_status()
        if not ok:
            return f"the CUDA driver is unavailable ({message})"
    return None


def ranges_for(device: Any, nvtx: bool, window: tuple[int, int] | None) -> StepRanges:
    """The observer for a model on the CUDA ``device``: torch's NVTX when ``nvtx``, the driver's profiler
    range around decode steps ``window`` when given."""
    import torch

    ordinal = device.index if device.index is not None else torch.cuda.current_device()
    return StepRanges(
        nvtx=torch.cuda.nvtx if nvtx else None,
        profiler=lambda start: cuda_profiler_range(ordinal, start),
        window=window,
    )
