"""Shared fixtures.

The fake CUDA driver (tests/fake_cuda/fake_cuda.c) is compiled once per session into a temporary directory.
The extension loads the driver named by $LLMPROF_CUDA_DRIVER when a CUDA Timeline is created (it caches one
loaded library per path), so a test selects the fake by setting that variable, as the `fake_cuda` and
`use_fake_cuda` fixtures do.
"""

import ctypes
import gc
import shutil
import subprocess
from pathlib import Path

import pytest

DRIVER_ENV = "LLMPROF_CUDA_DRIVER"  # == llmprof._core.DRIVER_ENV (checked in test_core_cuda.py)
FAKE_CUDA_SRC = Path(__file__).parent / "fake_cuda" / "fake_cuda.c"


class FakeCuda:
    """Controls of one build of the fake driver. ctypes opens the same path as the extension, so dlopen
    returns the same loaded instance and the state (counters, injected failures) is shared."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.lib = ctypes.CDLL(self.path)
        self.lib.fake_set_queue_delay_ns.argtypes = [ctypes.c_longlong]
        self.lib.fake_set_clock_skew_ppm.argtypes = [ctypes.c_double]
        self.lib.fake_set_elapsed_bits.argtypes = [ctypes.c_int]
        self.lib.fake_fail_after.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        self.lib.fake_count.argtypes = [ctypes.c_char_p]
        self.lib.fake_last_record_stream.restype = ctypes.c_size_t
        self.lib.fake_set_device_queue_delay_ns.argtypes = [ctypes.c_int, ctypes.c_longlong]
        self.lib.fake_set_stream_device.argtypes = [ctypes.c_size_t, ctypes.c_int]
        self.lib.fake_device_last_record_stream.restype = ctypes.c_size_t
        self.lib.fake_profiler_stamp.restype = ctypes.c_longlong
        self.lib.fake_set_record_stall.argtypes = [ctypes.c_longlong, ctypes.c_int]

    def fail(self, fn: str, code: int, after: int = 0) -> None:
        """`fn` succeeds `after` more times, then returns `code` until reset()."""
        if self.lib.fake_fail_after(fn.encode(), after, code) != 0:
            raise ValueError(f"fake CUDA driver has no {fn}")

    def count(self, fn: str) -> int:
        n = self.lib.fake_count(fn.encode())
        if n < 0:
            raise ValueError(f"fake CUDA driver has no {fn}")
        return n

    def set_queue_delay_ns(self, ns: int) -> None:
        self.lib.fake_set_queue_delay_ns(ns)

    def set_record_stall(self, ns: int, every: int) -> None:
        """Every ``every``-th event record (0: none) waits ``ns`` before its event enters the queue."""
        self.lib.fake_set_record_stall(ns, every)

    def set_device_queue_delay_ns(self, device: int, ns: int) -> None:
        """The queue delay of one of the stand-in's two devices (set_queue_delay_ns sets both)."""
        self.lib.fake_set_device_queue_delay_ns(device, ns)

    def set_stream_device(self, stream: int, device: int) -> None:
        """Tie a stream handle to a device: recording another device's event on it fails."""
        if self.lib.fake_set_stream_device(stream, device) != 0:
            raise ValueError(f"cannot register stream {stream:#x} on device {device}")

    def device_records(self, device: int) -> int:
        """Events recorded on ``device`` since reset()."""
        return self.lib.fake_device_records(device)

    def device_last_record_stream(self, device: int) -> int:
        return self.lib.fake_device_last_record_stream(device)

    def device_ctx_refcount(self, device: int) -> int:
        return self.lib.fake_device_ctx_refcount(device)

    def last_copy_device(self) -> int:
        """The device of the stream of the last device-to-host copy (-1: unknown)."""
        return self.lib.fake_last_copy_device()

    def set_clock_skew_ppm(self, ppm: float) -> None:
        self.lib.fake_set_clock_skew_ppm(ppm)

    def set_elapsed_bits(self, bits: int) -> None:
        """cuEventElapsedTime keeps ``bits`` significant bits (0: a float's own 24)."""
        self.lib.fake_set_elapsed_bits(bits)

    def reset(self) -> None:
        self.lib.fake_reset()

    def live_events(self) -> int:
        return self.lib.fake_live_events()

    def live_host_buffers(self) -> int:
        return self.lib.fake_live_host_buffers()

    def ctx_refcount(self) -> int:
        return self.lib.fake_ctx_refcount()

    def ctx_depth(self) -> int:
        return self.lib.fake_ctx_depth()

    def last_record_stream(self) -> int:
        return self.lib.fake_last_record_stream()

    def profiler_stamp(self, stop: bool) -> int:
        """The host time of the last cuProfilerStart (stop False) or cuProfilerStop (stop True)."""
        return self.lib.fake_profiler_stamp(int(stop))


@pytest.fixture(scope="session")
def fake_cuda_build(tmp_path_factory):
    """build(*defines) -> path of the fake driver compiled (once per session) with those -D macros, e.g.
    build("FAKE_NO_EVENT_ELAPSED")."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fake CUDA driver")
    out_dir = tmp_path_factory.mktemp("fake_cuda")
    built: dict[tuple[str, ...], Path] = {}

    def build(*defines: str) -> Path:
        if defines not in built:
            out = out_dir / ("libfake_cuda" + "".join("_" + d.lower() for d in defines) + ".so")
            flags = [f"-D{d}" for d in defines]
            subprocess.run(
                [cc, "-shared", "-fPIC", "-O2", *flags, "-o", str(out), str(FAKE_CUDA_SRC)], check=True
            )
            built[defines] = out
        return built[defines]

    return build


@pytest.fixture
def use_fake_cuda(fake_cuda_build, monkeypatch):
    """use(*defines) -> FakeCuda: selects that build of the fake driver for this test, through
    $LLMPROF_CUDA_DRIVER, with its counters and injected failures reset now and after the test. Garbage from
    earlier tests (Timelines held by exception tracebacks) is collected first, so live counts are settled."""
    used = []

    def use(*defines: str) -> FakeCuda:
        gc.collect()
        fake = FakeCuda(fake_cuda_build(*defines))
        monkeypatch.setenv(DRIVER_ENV, fake.path)
        fake.reset()
        used.append(fake)
        return fake

    yield use
    for fake in used:
        fake.reset()


@pytest.fixture
def fake_cuda(use_fake_cuda) -> FakeCuda:
    """The default build of the fake driver, selected and reset (see use_fake_cuda)."""
    return use_fake_cuda()
