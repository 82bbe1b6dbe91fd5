"""llmprof._core's CUDA backend, on the fake driver of tests/fake_cuda (selected by $LLMPROF_CUDA_DRIVER)."""

import gc
import json
import statistics
import subprocess
import sys
import time

import pytest
import torch

from llmprof import _core
from llmprof.capture.timeline import resolved

MS = 1_000_000
US = 1_000


def test_driver_env_name():
    assert _core.DRIVER_ENV == "LLMPROF_CUDA_DRIVER"


def test_driver_status_ok(fake_cuda):
    ok, message = _core.cuda_driver_status()
    assert ok, message
    assert "12.4" in message and fake_cuda.path in message


def test_backend_properties(fake_cuda):
    tl = _core.Timeline(8, device=0)
    assert tl.backend == "cuda"
    assert tl.capacity == 8
    assert tl.driver_version == 12040
    assert fake_cuda.ctx_depth() == 0  # the context pushed for event creation was popped


def test_marks_record_events_and_mark_host_does_not(fake_cuda):
    tl = _core.Timeline(16, device=0)
    tl.calibrate()
    records = fake_cuda.count("cuEventRecord")
    for i in range(5):
        tl.mark(i, 10 + i)
    tl.mark_host(5, 15)
    tl.mark(6, 16)
    assert fake_cuda.count("cuEventRecord") - records == 6
    r = resolved(tl)
    assert r["backend"] == "cuda"
    assert r["label"] == list(range(7))
    assert r["step"] == list(range(10, 17))
    assert [d is None for d in r["device_ns"]] == [False] * 5 + [True, False]


def test_set_stream_is_passed_to_the_driver(fake_cuda):
    tl = _core.Timeline(4, device=0)
    tl.set_stream(0x7F00DEADBEE0)
    tl.mark(1, 0)
    assert fake_cuda.last_record_stream() == 0x7F00DEADBEE0
    tl.set_stream(0)
    tl.mark(2, 0)
    assert fake_cuda.last_record_stream() == 0


def test_idle_gpu_device_time_matches_host_time(fake_cuda):
    tl = _core.Timeline(64, device=0)
    tl.calibrate()
    for i in range(20):
        tl.mark(i, i)
        time.sleep(0.0005)
    r = resolved(tl)
    lag = [d - h for d, h in zip(r["device_ns"], r["host_ns"])]
    # The event is recorded after the host stamp and the reference is stamped after it completed: never early.
    assert min(lag) >= 0, lag
    assert statistics.median(lag) < 200 * US, lag
    assert max(lag) < 2 * MS, lag
    assert 0 < r["sync_uncertainty_ns"] < 1 * MS


def test_busy_gpu_device_time_is_later_by_the_queue_delay(fake_cuda):
    tl = _core.Timeline(64, device=0)
    tl.calibrate()
    fake_cuda.set_queue_delay_ns(5 * MS)
    for i in range(5):
        tl.mark(i, i)
    r = resolved(tl)
    after = _core.host_now_ns()
    lag = [d - h for d, h in zip(r["device_ns"], r["host_ns"])]
    assert all(abs(x - 5 * MS) < 1 * MS for x in lag), lag
    assert max(r["device_ns"]) <= after  # resolve() waited for the events


def test_resolve_waits_for_events_on_other_streams(fake_cuda):
    tl = _core.Timeline(8, device=0)
    tl.calibrate()
    fake_cuda.set_queue_delay_ns(20 * MS)
    tl.set_stream(1)
    tl.mark(1, 0)
    fake_cuda.set_queue_delay_ns(0)
    tl.set_stream(2)
    tl.mark(2, 0)  # the last event completes first
    r = resolved(tl)
    lag = [d - h for d, h in zip(r["device_ns"], r["host_ns"])]
    assert abs(lag[0] - 20 * MS) < 2 * MS, lag
    assert lag[1] < 2 * MS, lag


def test_events_before_calibration_map_too(fake_cuda):
    tl = _core.Timeline(8, device=0)
    tl.mark(1, 0)
    time.sleep(0.002)
    tl.calibrate()  # reference after the mark: negative elapsed time
    r = resolved(tl)
    assert 0 <= r["device_ns"][0] - r["host_ns"][0] < 1 * MS


def test_resolve_requires_calibration(fake_cuda):
    tl = _core.Timeline(8, device=0)
    tl.mark(1, 0)
    with pytest.raises(RuntimeError, match="calibrate") as info:
        resolved(tl)
    assert not isinstance(info.value, _core.CudaError)
    assert fake_cuda.ctx_depth() == 0


def test_drift_is_zero_on_a_shared_clock(fake_cuda):
    tl = _core.Timeline(8, device=0)
    assert tl.drift_ns() is None
    tl.calibrate()
    assert tl.drift_ns() is None
    time.sleep(0.01)
    tl.calibrate()
    assert abs(tl.drift_ns()) < 100 * US
    time.sleep(0.01)
    tl.calibrate()  # compares with the second calibration, whose event must still be valid
    assert abs(tl.drift_ns()) < 100 * US


def test_drift_measures_a_fast_device_clock(fake_cuda):
    fake_cuda.set_clock_skew_ppm(10_000)  # device clock 1% fast
    tl = _core.Timeline(8, device=0)
    tl.calibrate()
    t0 = _core.host_now_ns()
    time.sleep(0.1)
    tl.calibrate()
    elapsed = _core.host_now_ns() - t0
    # 1% of ~100 ms: -1 ms; the tolerance covers scheduling jitter of the two calibrations on a loaded machine
    assert tl.drift_ns() == pytest.approx(-0.01 * elapsed, abs=0.1 * 0.01 * elapsed + 50 * US)


def test_a_fast_device_clock_is_corrected_by_the_calibrations_around_the_marks(fake_cuda):
    fake_cuda.set_clock_skew_ppm(10_000)  # device clock 1% fast
    tl = _core.Timeline(64, device=0)
    tl.calibrate()  # the previous reference (attach, or the end of the previous request)
    time.sleep(0.05)
    tl.anchor()
    for i in range(20):
        tl.mark(i, i)
        time.sleep(0.001)
    time.sleep(0.02)
    tl.calibrate()  # the reference after the marks
    r = resolved(tl)
    lag = [d - h for d, h in zip(r["device_ns"], r["host_ns"])]
    # unscaled, the first mark, >= 40 ms of device time before the reference, would be 400 us early
    far = r["host_ns"][-1] - r["host_ns"][0] + 20 * MS
    assert 0.01 * far >= 400 * US
    assert abs(statistics.median(lag)) < 50 * US + r["sync_uncertainty_ns"], lag


def test_a_long_running_timeline_keeps_its_resolution_through_the_references_around_a_request(fake_cuda):
    # 11 significant bits: 2 s from the origin resolve to 1 ms, as float32 milliseconds do after 4 hours
    fake_cuda.set_elapsed_bits(11)
    tl = _core.Timeline(64, device=0)
    tl.calibrate()  # attached "hours" ago
    time.sleep(2.0)
    tl.anchor()
    for i in range(10):
        tl.mark(i, i)
        time.sleep(0.001)
    tl.calibrate()
    r = resolved(tl)
    lag = [d - h for d, h in zip(r["device_ns"], r["host_ns"])]
    # mapped through the attach reference, each would be off by up to 500 us (250 us typically); through the
    # anchor and the reference right after the marks, ~10 ms away, by ~10 us, beside the calibration's own
    # uncertainty (the reference is stamped at the end of its bracket)
    assert statistics.median(abs(x) for x in lag) < 40 * US + r["sync_uncertainty_ns"], lag


def test_the_anchor_is_recorded_once_per_request_and_forgotten_by_clear(fake_cuda):
    tl = _core.Timeline(8, device=0)
    tl.calibrate()
    before = fake_cuda.count("cuEventRecord")
    tl.anchor()
    tl.mark(1, 0)
    assert fake_cuda.count("cuEventRecord") == before + 2
    tl.calibrate()
    first = resolved(tl)
    tl.clear()  # the next request has no anchor until it records one: its events map through the reference
    tl.mark(1, 0)
    tl.calibrate()
    second = resolved(tl)
    for r in (first, second):
        assert 0 <= r["device_ns"][0] - r["host_ns"][0] < 1 * MS


def test_pool_exhausted_counts_drops(fake_cuda):
    tl = _core.Timeline(4, device=0)
    tl.calibrate()
    records = fake_cuda.count("cuEventRecord")
    for i in range(6):
        tl.mark(i, 0)
    assert fake_cuda.count("cuEventRecord") - records == 4
    assert tl.dropped == 2
    r = resolved(tl)
    assert r["label"] == [0, 1, 2, 3] and r["dropped"] == 2
    assert None not in r["device_ns"]


def test_reserve_grows_the_pool_and_clear_reuses_it(fake_cuda):
    tl = _core.Timeline(2, device=0)
    live = fake_cuda.live_events()
    tl.reserve(6)
    assert tl.capacity == 6
    assert fake_cuda.live_events() - live == 4
    tl.calibrate()
    for _ in range(2):
        tl.clear()
        for i in range(6):
            tl.mark(i, 0)
        r = resolved(tl)
        assert None not in r["device_ns"] and r["dropped"] == 0
    assert fake_cuda.live_events() - live == 4  # no event created for the second round


def test_gc_destroys_events_and_releases_the_context(fake_cuda):
    live, refs = fake_cuda.live_events(), fake_cuda.ctx_refcount()
    tl = _core.Timeline(16, device=0)
    tl.calibrate()
    tl.mark(1, 0)
    assert fake_cuda.live_events() - live >= 16
    assert fake_cuda.ctx_refcount() == refs + 1
    del tl
    gc.collect()
    assert fake_cuda.live_events() == live
    assert fake_cuda.ctx_refcount() == refs
    assert fake_cuda.ctx_depth() == 0


def test_timeline_keeps_its_driver_when_the_env_var_changes(fake_cuda, monkeypatch, tmp_path):
    tl = _core.Timeline(4, device=0)
    monkeypatch.setenv(_core.DRIVER_ENV, str(tmp_path / "gone.so"))
    tl.calibrate()
    tl.mark(1, 0)
    assert resolved(tl)["device_ns"][0] is not None


# ---- error paths ----


def test_library_not_found(monkeypatch, tmp_path):
    path = str(tmp_path / "libcuda_missing.so")
    monkeypatch.setenv(_core.DRIVER_ENV, path)
    with pytest.raises(_core.CudaError, match="No such file") as info:
        _core.Timeline(4, device=0)
    assert path in str(info.value)
    assert isinstance(info.value, RuntimeError)
    ok, message = _core.cuda_driver_status()
    assert not ok and path in message


def test_missing_symbol(use_fake_cuda):
    path = use_fake_cuda("FAKE_NO_EVENT_ELAPSED").path
    with pytest.raises(_core.CudaError, match="cuEventElapsedTime") as info:
        _core.Timeline(4, device=0)
    assert path in str(info.value)
    ok, message = _core.cuda_driver_status()
    assert not ok and "cuEventElapsedTime" in message


def test_cuinit_fails(fake_cuda):
    refs = fake_cuda.ctx_refcount()
    fake_cuda.fail("cuInit", 100)
    with pytest.raises(_core.CudaError, match=r"cuInit failed: CUDA_ERROR_NO_DEVICE \(100\)"):
        _core.Timeline(4, device=0)
    ok, message = _core.cuda_driver_status()
    assert not ok and "CUDA_ERROR_NO_DEVICE" in message
    assert fake_cuda.ctx_refcount() == refs
    fake_cuda.reset()
    assert _core.cuda_driver_status()[0]
    assert _core.Timeline(4, device=0).backend == "cuda"


def test_bad_device_ordinal(fake_cuda):
    refs = fake_cuda.ctx_refcount()
    with pytest.raises(_core.CudaError, match="cuDeviceGet failed: CUDA_ERROR_INVALID_DEVICE"):
        _core.Timeline(4, device=2)  # the stand-in has devices 0 and 1
    assert fake_cuda.ctx_refcount() == refs


def test_event_create_fails_in_constructor_without_leaks(fake_cuda):
    live, refs = fake_cuda.live_events(), fake_cuda.ctx_refcount()
    fake_cuda.fail("cuEventCreate", 2, after=10)
    with pytest.raises(
        _core.CudaError, match=r"cuEventCreate failed: CUDA_ERROR_OUT_OF_MEMORY \(2\): out of memory"
    ):
        _core.Timeline(100, device=0)
    assert fake_cuda.count("cuEventCreate") == 11
    assert fake_cuda.count("cuEventDestroy") == 10
    assert fake_cuda.live_events() == live
    assert fake_cuda.ctx_refcount() == refs
    assert fake_cuda.ctx_depth() == 0


def test_event_create_fails_in_reserve(fake_cuda):
    live = fake_cuda.live_events()
    tl = _core.Timeline(4, device=0)
    fake_cuda.fail("cuEventCreate", 2, after=3)
    with pytest.raises(_core.CudaError, match="cuEventCreate"):
        tl.reserve(100)
    assert tl.capacity == 4
    assert fake_cuda.ctx_depth() == 0
    del tl
    gc.collect()
    assert fake_cuda.live_events() == live


def test_event_record_fails_in_mark(fake_cuda):
    tl = _core.Timeline(4, device=0)
    tl.mark(1, 0)
    fake_cuda.fail("cuEventRecord", 400)
    with pytest.raises(_core.CudaError) as info:
        tl.mark(2, 0)
    assert str(info.value) == "cuEventRecord failed: CUDA_ERROR_INVALID_HANDLE (400): invalid resource handle"
    assert len(tl) == 1  # the failed mark is not kept
    tl.mark_host(3, 0)  # host marks do not touch the driver
    fake_cuda.reset()
    tl.mark(4, 0)
    tl.calibrate()
    r = resolved(tl)
    assert r["label"] == [1, 3, 4]
    assert [d is None for d in r["device_ns"]] == [False, True, False]


def test_event_synchronize_fails_in_resolve(fake_cuda):
    tl = _core.Timeline(4, device=0)
    tl.calibrate()
    tl.mark(1, 0)
    fake_cuda.fail("cuEventSynchronize", 700)
    with pytest.raises(_core.CudaError, match="cuEventSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS"):
        resolved(tl)
    assert fake_cuda.ctx_depth() == 0


def test_stream_synchronize_fails_in_calibrate(fake_cuda):
    tl = _core.Timeline(4, device=0)
    fake_cuda.fail("cuStreamSynchronize", 999)
    with pytest.raises(_core.CudaError, match="cuStreamSynchronize failed: CUDA_ERROR_UNKNOWN"):
        tl.calibrate()
    with pytest.raises(RuntimeError, match="calibrate"):
        resolved(tl)


def test_elapsed_time_fails_in_drift(fake_cuda):
    tl = _core.Timeline(4, device=0)
    tl.calibrate()
    tl.calibrate()
    fake_cuda.fail("cuEventElapsedTime", 1)
    with pytest.raises(_core.CudaError, match="cuEventElapsedTime failed: CUDA_ERROR_INVALID_VALUE"):
        tl.drift_ns()


def test_error_without_error_strings(use_fake_cuda):
    fake = use_fake_cuda("FAKE_NO_ERROR_STRINGS")
    tl = _core.Timeline(4, device=0)
    fake.fail("cuEventRecord", 400)
    with pytest.raises(_core.CudaError) as info:
        tl.mark(1, 0)
    assert str(info.value) == "cuEventRecord failed: CUDA error 400"


# ---- symbol lookup: in a fresh process, where the loader runs for the first time on each build ----

CHILD = """
import ctypes, json, os, sys
from llmprof import _core
from llmprof.capture.timeline import resolved
out = []
for path in sys.argv[1:]:
    os.environ[_core.DRIVER_ENV] = path
    lib = ctypes.CDLL(path)
    tl = _core.Timeline(4, device=0)
    tl.calibrate()
    tl.mark(1, 0)
    out.append({"device_ns": resolved(tl)["device_ns"],
                "v2": lib.fake_count(b"cuGetProcAddress_v2"), "v1": lib.fake_count(b"cuGetProcAddress")})
print(json.dumps(out))
"""


def test_symbol_lookup_paths(fake_cuda_build):
    # Which lookup each build leaves to the loader: cuGetProcAddress_v2, cuGetProcAddress, or dlsym only.
    builds = {(): "v2", ("FAKE_NO_PROC_ADDRESS_V2",): "v1", ("FAKE_NO_PROC_ADDRESS",): None}
    paths = [str(fake_cuda_build(*defines)) for defines in builds]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *paths], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for used, out in zip(builds.values(), json.loads(proc.stdout)):
        assert out["device_ns"][0] is not None
        assert (out["v2"] > 0, out["v1"] > 0) == (used == "v2", used == "v1"), (used, out)


# ---- the finished flags of a request: kept without a sync, in pinned memory on the CUDA backend ----


def test_device_flags_are_copied_asynchronously_into_pinned_memory_and_read_after_the_request(fake_cuda):
    tl = _core.Timeline(32, device=0)
    tl.calibrate()
    buffers = fake_cuda.live_host_buffers()
    tl.begin_request(4, 2)
    tl.arm(True)
    assert fake_cuda.live_host_buffers() - buffers == 1  # one pinned buffer for the request's flags
    steps = [torch.tensor([False, False]), torch.tensor([True, False]), torch.tensor([True, True])]
    copies = fake_cuda.count("cuMemcpyDtoHAsync")
    syncs = fake_cuda.count("cuStreamSynchronize") + fake_cuda.count("cuEventSynchronize")
    for flags in steps:  # the fake's device pointers are host addresses: a "device" tensor is a CPU one
        tl.mark_token()
        tl.keep_ptr(flags.data_ptr(), flags.nbytes, True)
    assert fake_cuda.count("cuMemcpyDtoHAsync") - copies == 3
    assert fake_cuda.count("cuStreamSynchronize") + fake_cuda.count("cuEventSynchronize") == syncs  # no sync
    tl.end_request()
    tl.calibrate()
    resolved(tl)
    assert tl.flags_shape == (3, 2) and tl.flags == bytes([0, 0, 1, 0, 1, 1]) and tl.flags_error == ""
    tl.begin_request(8, 2)  # a larger request: the buffer is replaced, not added to
    assert fake_cuda.live_host_buffers() - buffers == 1
    del tl
    gc.collect()
    assert fake_cuda.live_host_buffers() == buffers


def test_host_flags_on_the_cuda_backend_are_copied_at_once_and_device_flags_need_the_cuda_backend(fake_cuda):
    tl = _core.Timeline(32, device=0)
    tl.calibrate()
    tl.begin_request(4, 1)
    tl.arm(True)
    copies = fake_cuda.count("cuMemcpyDtoHAsync")
    tl.mark_token()
    tl.keep(torch.tensor([True]))  # a CPU tensor: a plain memcpy
    assert fake_cuda.count("cuMemcpyDtoHAsync") == copies and tl.flags == bytes([1])
    host = _core.Timeline(8)
    host.begin_request(2, 1)
    host.arm(True)
    host.mark_token()
    host.keep_ptr(torch.tensor([True]).data_ptr(), 1, True)
    assert "on a GPU, but this timeline records host stamps only" in host.flags_error


def test_flags_that_change_size_or_skip_a_step_are_reported_not_kept():
    tl = _core.Timeline(32)
    tl.begin_request(4, 2)
    tl.arm(True)
    tl.mark_token()
    tl.keep(torch.zeros(2, dtype=torch.bool))
    tl.mark_token()
    tl.keep(torch.zeros(3, dtype=torch.bool))
    assert tl.flags_error == "finished flags changed size from 2 to 3 (step 2)"
    tl.begin_request(4, 2)
    tl.arm(True)
    tl.mark_token()
    tl.mark_token()
    tl.keep(torch.zeros(2, dtype=torch.bool))
    assert tl.flags_error == "finished flags were not given at every step (step 2)"
    small = _core.Timeline(32)  # a fresh timeline: its flag buffer is only the 1 step reserved
    small.begin_request(1, 1)
    small.arm(True)
    for _ in range(2):
        small.mark_token()
        small.keep(torch.zeros(1, dtype=torch.bool))
    assert small.flags_error == "more steps than the 1 reserved (step 2)"
    tl.begin_request(4, 1)  # not armed: nothing is kept
    tl.mark_token()
    tl.keep(torch.zeros(1, dtype=torch.bool))
    assert tl.step == 0 and tl.flags is None
