"""The CUDA backend with one lane per device (a device_map model in one process), on the stand-in driver's two
devices: each has its own queue and its own clock (device 1's reads 3.7 s ahead of device 0's), and refuses an
event recorded on another device's stream or timed against another device's event, as a real driver does."""

import ctypes

import pytest

from llmprof import _core
from llmprof.analysis.record import Label
from llmprof.capture.timeline import resolved

MS = 1_000_000
STREAM_0, STREAM_1 = 0xA000, 0xB000


def two_lanes(fake_cuda, capacity=64):
    fake_cuda.set_stream_device(STREAM_0, 0)
    fake_cuda.set_stream_device(STREAM_1, 1)
    tl = _core.Timeline(capacity, devices=[0, 1])
    tl.set_streams([STREAM_0, STREAM_1])
    tl.calibrate()
    return tl


def test_a_forward_begins_on_the_first_lane_and_ends_on_every_lane(fake_cuda):
    tl = two_lanes(fake_cuda)
    assert tl.backend == "cuda" and tl.devices == [0, 1]
    fake_cuda.reset()
    fake_cuda.set_stream_device(STREAM_0, 0)
    fake_cuda.set_stream_device(STREAM_1, 1)
    opening = [Label.FORWARD_BEGIN, Label.VISION_BEGIN, Label.ENCODER_BEGIN, Label.DRAFT_BEGIN]
    closing = [Label.FORWARD_END, Label.TOKEN, Label.VISION_END, Label.ENCODER_END, Label.DRAFT_END]
    for label in opening + closing:  # the labels the extension knows open a span are Python's own
        tl.mark(label, 0)
    assert (fake_cuda.device_records(0), fake_cuda.device_records(1)) == (9, 5)
    assert fake_cuda.device_last_record_stream(0) == STREAM_0
    assert fake_cuda.device_last_record_stream(1) == STREAM_1
    assert fake_cuda.ctx_depth() == 0  # every lane's context pushed for its record was popped
    tl.calibrate()
    r = resolved(tl)
    assert r["lanes"] == [1] * 4 + [2] * 5
    assert [row[1] == 0 for row in r["lane_ns"]] == [True] * 4 + [False] * 5  # lane 1 only where recorded


def test_each_lane_is_mapped_through_its_own_calibration(fake_cuda):
    """Device 1 runs 5 ms behind its records, device 0 none: a forward's end is device 1's, its begin device 0's,
    each on the host clock although device 1's clock reads 3.7 s ahead (one reference for both would be off by
    seconds; the stand-in refuses to time events of two devices against each other)."""
    tl = two_lanes(fake_cuda)
    tl.begin_request(4)
    tl.arm(True)
    fake_cuda.set_device_queue_delay_ns(1, 5 * MS)
    with tl.span():
        pass
    tl.token()
    tl.end_request()
    tl.calibrate()
    r = resolved(tl)
    ends = r["label"].index(Label.FORWARD_END)
    begin = r["label"].index(Label.FORWARD_BEGIN)
    assert r["device_ns"][begin] - r["host_ns"][begin] == pytest.approx(0, abs=1 * MS)
    lane_0, lane_1 = r["lane_ns"][ends]
    assert lane_0 - r["host_ns"][ends] == pytest.approx(0, abs=1 * MS)
    assert lane_1 - r["host_ns"][ends] == pytest.approx(5 * MS, abs=1 * MS)
    assert r["device_ns"][ends] == max(lane_0, lane_1)  # the latest lane
    assert 0 < r["sync_uncertainty_ns"] < 1e9


def test_streams_must_match_their_lanes(fake_cuda):
    tl = two_lanes(fake_cuda)
    with pytest.raises(ValueError, match="1 streams for 2 lanes"):
        tl.set_streams([STREAM_0])
    tl.set_streams([STREAM_1, STREAM_0])  # device 1's stream on device 0's lane
    with pytest.raises(_core.CudaError, match="cuEventRecord failed: CUDA_ERROR_INVALID_HANDLE"):
        tl.mark(Label.FORWARD_BEGIN, 0)
    assert fake_cuda.ctx_depth() == 0


def test_flags_are_copied_on_the_lane_of_their_device(fake_cuda):
    tl = two_lanes(fake_cuda)
    flags = (ctypes.c_char * 2)(b"\x01", b"\x00")
    address = ctypes.addressof(flags)
    tl.begin_request(4, 2)
    tl.arm(True)
    tl.mark_token()
    tl.keep_ptr(address, 2, True, 1)
    assert fake_cuda.last_copy_device() == 1 and tl.flags_error == ""
    tl.mark_token()
    tl.keep_ptr(address, 2, True, 3)
    assert tl.flags_error == "finished flags on cuda:3, a device this timeline does not record"


def test_lanes_release_what_they_acquired(fake_cuda):
    live, refs = fake_cuda.live_events(), (fake_cuda.device_ctx_refcount(0), fake_cuda.device_ctx_refcount(1))
    tl = _core.Timeline(16, devices=[1, 0])
    assert tl.devices == [1, 0]
    assert fake_cuda.live_events() - live == 2 * (
        16 + 4
    )  # each lane: its pool, 3 calibration events, an anchor
    assert (fake_cuda.device_ctx_refcount(0), fake_cuda.device_ctx_refcount(1)) == (refs[0] + 1, refs[1] + 1)
    del tl
    assert fake_cuda.live_events() == live
    assert (fake_cuda.device_ctx_refcount(0), fake_cuda.device_ctx_refcount(1)) == refs
    fake_cuda.fail("cuEventCreate", 999, after=30)  # fails inside the second lane
    with pytest.raises(_core.CudaError, match="cuEventCreate"):
        _core.Timeline(16, devices=[0, 1])
    assert fake_cuda.live_events() == live
    assert (fake_cuda.device_ctx_refcount(0), fake_cuda.device_ctx_refcount(1)) == refs


def test_bad_lane_lists(fake_cuda):
    with pytest.raises(ValueError, match="distinct ordinals"):
        _core.Timeline(4, devices=[0, 0])
    with pytest.raises(ValueError, match="distinct ordinals"):
        _core.Timeline(4, devices=[-1])
    assert _core.Timeline(4, devices=[]).backend == "host"
    with pytest.raises(_core.CudaError, match="cuDeviceGet failed: CUDA_ERROR_INVALID_DEVICE"):
        _core.Timeline(4, devices=[0, 2])
