"""Types of llmprof's compiled recorder (csrc/bindings.cpp): host clock, preallocated timeline, CUDA events
through the driver API loaded at run time."""

from typing import Literal, TypedDict

DRIVER_ENV: str  # the environment variable naming another CUDA driver library (tests load a stand-in)

class CudaError(RuntimeError):
    """A CUDA driver call failed; the message names the call and the driver's error."""

class Resolved(TypedDict):
    """What :meth:`Timeline.resolve` returns: one column per mark field, and how to read them."""

    label: list[int]
    step: list[int]
    host_ns: list[int]
    device_ns: list[int | None]  # the device time mapped onto the host clock; None for host-only marks
    sync_uncertainty_ns: int
    backend: Literal["host", "cuda"]
    dropped: int

def host_now_ns() -> int:
    """CLOCK_MONOTONIC in ns (the clock of time.monotonic_ns())."""

def cuda_driver_status() -> tuple[bool, str]:
    """(ok, message): can the CUDA driver be loaded and cuInit(0) succeed? Never raises."""

class Timeline:
    """Preallocated timeline of (label, step) marks; CUDA backend when device >= 0."""

    def __init__(self, capacity: int = 65536, device: int = -1) -> None: ...
    @property
    def backend(self) -> Literal["host", "cuda"]: ...
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
    def mark(self, label: int, step: int) -> None:
        """Host stamp (+ CUDA event on the current stream). Counts a drop when full."""
    def mark_host(self, label: int, step: int) -> None:
        """Host stamp only."""
    def clear(self) -> None:
        """Forget the marks, the drop count and the anchor; keep capacity and calibration."""
    def anchor(self) -> None:
        """Record the request's anchor event on the current stream, no sync (no-op on the host backend)."""
    def calibrate(self) -> None:
        """Synchronize the stream, pin a reference event to the host clock (no-op on the host backend)."""
    def resolve(self) -> Resolved:
        """Wait for the events and map them to host ns through the last calibration (or the nearer anchor),
        corrected for the device clock's drift."""
    def drift_ns(self) -> int | None:
        """Host minus device time elapsed between the last two calibrations (else None)."""
