"""Types of llmprof's compiled recorder (csrc/bindings.cpp): host clock, preallocated timeline, CUDA events
through the driver API loaded at run time."""

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypedDict, overload

import numpy as np

DRIVER_ENV: str  # the environment variable naming another CUDA driver library (tests load a stand-in)

class CudaError(RuntimeError):
    """A CUDA driver call failed; the message names the call and the driver's error."""

class Resolved(TypedDict):
    """What :meth:`Timeline.resolve` returns: one int64 array per mark field, and how to read them."""

    label: np.ndarray
    step: np.ndarray
    host_ns: np.ndarray
    device_ns: np.ndarray  # the device time mapped onto the host clock; 0 for host-only marks
    has_device: np.ndarray  # bool: the mark has a device time
    lanes: np.ndarray  # per mark, the lanes its event was recorded on (0: host-only)
    lane_ns: np.ndarray | None  # several lanes: marks x lanes, each lane's time (device_ns is the latest)
    sync_uncertainty_ns: int
    backend: Literal["host", "cuda"]
    dropped: int

def host_now_ns() -> int:
    """CLOCK_MONOTONIC in ns (the clock of time.monotonic_ns())."""

def cuda_driver_status() -> tuple[bool, str]:
    """(ok, message): can the CUDA driver be loaded and cuInit(0) succeed? Never raises."""

def cuda_profiler_range(device: int, start: bool) -> None:
    """cuProfilerStart() (start) or, after cuCtxSynchronize(), cuProfilerStop() in the device's primary context; raises CudaError."""

def set_step_observer(observer: Callable[[int, int], object] | None) -> None:
    """observer(label, step) after each mark that opens or closes a step (REQUEST_START, FORWARD_BEGIN, TOKEN, REQUEST_END) of any timeline, until set to None."""

def install_marking_call(cls: type, criteria_call: Callable[..., Any]) -> None:
    """Give the token-marking criteria class its __call__ in C, running criteria_call for the criteria."""

class ProcessSampler:
    """The process's CPU time and RSS sampled by a native thread (no GIL) every interval_ns, on the host clock."""

    def __init__(self, interval_ns: int) -> None: ...
    @property
    def interval_ns(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def start(self) -> None:
        """A first sample now, then one every interval on the native thread (idempotent)."""
    def stop(self) -> None:
        """Join the thread, then a last sample (idempotent)."""
    def probe(self) -> tuple[int, int, int]:
        """(t_ns, cpu_ns, rss_bytes) now, from the calling thread (rss_bytes -1 when unknown)."""
    def take(self) -> list[tuple[int, int, int]]:
        """The samples kept since the last take(): a list of (t_ns, cpu_ns, rss_bytes)."""

class TimedCall:
    """A callable marking a forward span around fn when its timeline is armed."""

    @property
    def fn(self) -> Callable[..., Any]:
        """The wrapped callable."""
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

class Span:
    """The context manager of Recorder.forward() / Recorder.prefill()."""

    def __enter__(self) -> None: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

class Timeline:
    """Preallocated timeline of (label, step) marks; CUDA backend when device >= 0."""

    @overload
    def __init__(self, capacity: int = 65536, device: int = -1) -> None: ...
    @overload
    def __init__(self, capacity: int, devices: Sequence[int]) -> None:
        """The CUDA backend with one lane per device ordinal (a device_map model), the first where a forward
        starts."""
    @property
    def backend(self) -> Literal["host", "cuda"]: ...
    @property
    def devices(self) -> list[int]:
        """The lanes' device ordinals ([] on the host)."""
    @property
    def capacity(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def dropped(self) -> int:
        """Marks that did not fit since the last clear()."""
    @property
    def driver_version(self) -> int | None: ...
    def __len__(self) -> int: ...
    def reserve(self, n: int) -> None:
        """Grow the capacity (and the CUDA event pool) to n."""
    def set_stream(self, handle: int) -> None:
        """CUstream as an int (torch.cuda.current_stream().cuda_stream); 0 = legacy default stream."""
    def set_streams(self, handles: Sequence[int]) -> None:
        """One CUstream per lane, in the lanes' order (set_stream() sets the first)."""
    def mark(self, label: int, step: int) -> None:
        """Host stamp (+ CUDA event on the current stream). Counts a drop when full."""
    def mark_host(self, label: int, step: int) -> None:
        """Host stamp only."""
    def clear(self) -> None:
        """Forget the marks, the drop count, the anchor and the request; keep capacity and calibration."""
    def anchor(self) -> None:
        """Record the request's anchor event on the current stream, no sync (no-op on the host backend)."""
    def calibrate(self) -> None:
        """Synchronize the stream, pin a reference event to the host clock (no-op on the host backend)."""
    def resolve(self) -> Resolved:
        """Wait for the events and map them to host ns through the last calibration (or the nearer anchor),
        corrected for the device clock's drift: int64 arrays per mark field, and has_device (False for
        host-only marks, whose device_ns is 0); lanes (per mark, the lanes its event went on) and, with
        several lanes, lane_ns (marks x lanes, each lane through its own calibration; device_ns is the latest)."""
    # the request being recorded
    def begin_request(self, max_steps: int, batch: int = 0) -> None:
        """Clear, anchor and stamp REQUEST_START; room for max_steps steps of `batch` flags (0: any)."""
    def reserve_steps(self, max_steps: int, batch: int = 0) -> None:
        """More room for the open request's steps, before its first flags."""
    def end_request(self) -> None:
        """Stamp REQUEST_END; stop recording."""
    def arm(self, on: bool) -> None:
        """Let forward and token marks count (only in a request)."""
    @property
    def open(self) -> bool:
        """A request is being recorded."""
    @property
    def armed(self) -> bool:
        """Forward and token marks count."""
    @property
    def in_forward(self) -> bool:
        """A forward span is open."""
    @property
    def step(self) -> int:
        """Steps whose token was marked in the request."""
    def mark_token(self) -> None:
        """Hot path: step k's token (k = step + 1) when armed, else nothing."""
    def keep(self, flags: Any) -> None:
        """Hot path: the current step's per-sequence flags (a contiguous one-byte tensor), copied without a
        sync when armed."""
    def keep_ptr(self, ptr: int, nbytes: int, on_device: bool, device: int = -1) -> None:
        """keep() from a raw pointer: host memory, or device memory on the CUDA backend (on the lane of
        `device` when there are several)."""
    def token(self, finished: Any | Sequence[bool] = None, tokens: int = 1) -> None:
        """The public API's token(): checked for misuse (CaptureError), flags a tensor or a sequence."""
    def timed(self, fn: Callable[..., Any]) -> TimedCall:
        """fn marked as a forward span of the current step when armed."""
    def span(self, prefill: bool = False) -> Span:
        """A checked forward (or prefill) span for the public API."""
    @property
    def step_tokens(self) -> list[int]:
        """Tokens each marked step appended."""
    @property
    def flags(self) -> bytes | None:
        """The kept flags as bytes (steps x batch, row-major), once resolve() has run; None if none."""
    @property
    def flags_shape(self) -> tuple[int, int]:
        """(steps, batch) of the kept flags."""
    @property
    def flags_error(self) -> str:
        """Why the kept flags cannot be used ('' when they can)."""
    def drift_ns(self) -> int | None:
        """Host minus device time elapsed between the last two calibrations (else None)."""
