"""llmprof._core on the host backend: clock, marks, capacity."""

import time

import pytest

from llmprof import _core
from llmprof.capture.timeline import resolved


def test_host_now_ns_is_the_monotonic_clock():
    for clock in (time.monotonic_ns, time.perf_counter_ns):
        before = clock()
        now = _core.host_now_ns()
        after = clock()
        assert before <= now <= after
        assert after - before < 1_000_000


def test_marks_round_trip_in_order():
    tl = _core.Timeline(16)
    assert tl.backend == "host"
    assert tl.capacity == 16
    assert tl.driver_version is None
    before = time.monotonic_ns()
    for i in range(10):
        tl.mark(i * 7 - 3, i)
    tl.mark_host(99, -1)
    after = time.monotonic_ns()
    assert len(tl) == tl.size == 11
    r = resolved(tl)
    assert r["label"] == [i * 7 - 3 for i in range(10)] + [99]
    assert r["step"] == list(range(10)) + [-1]
    assert r["device_ns"] == [None] * 11
    assert r["host_ns"] == sorted(r["host_ns"])
    assert before <= r["host_ns"][0] and r["host_ns"][-1] <= after
    assert r["backend"] == "host"
    assert r["dropped"] == 0
    assert r["sync_uncertainty_ns"] == 0


def test_large_labels_and_steps():
    tl = _core.Timeline(2)
    tl.mark(2**62, -(2**62))
    r = resolved(tl)
    assert (r["label"], r["step"]) == ([2**62], [-(2**62)])


def test_overflow_counts_drops_and_keeps_first_marks():
    tl = _core.Timeline(4)
    for i in range(7):
        tl.mark(i, i)
    tl.mark_host(7, 7)
    assert len(tl) == 4
    assert tl.dropped == 4
    r = resolved(tl)
    assert r["label"] == [0, 1, 2, 3]
    assert r["dropped"] == 4


def test_reserve_grows_and_keeps_marks():
    tl = _core.Timeline(2)
    tl.mark(1, 0)
    tl.mark(2, 0)
    tl.mark(3, 0)
    assert tl.dropped == 1
    tl.reserve(5)
    assert tl.capacity == 5
    tl.reserve(3)  # never shrinks
    assert tl.capacity == 5
    tl.mark(4, 0)
    assert resolved(tl)["label"] == [1, 2, 4]


def test_clear_forgets_marks_and_drops():
    tl = _core.Timeline(2)
    for i in range(5):
        tl.mark(i, 0)
    tl.clear()
    assert len(tl) == 0
    assert tl.dropped == 0
    assert tl.capacity == 2
    tl.mark(42, 1)
    assert resolved(tl)["label"] == [42]


def test_host_backend_calibration_is_a_noop():
    tl = _core.Timeline(4)
    tl.calibrate()
    tl.calibrate()
    assert tl.drift_ns() is None
    assert resolved(tl)["sync_uncertainty_ns"] == 0


def test_defaults_and_keywords():
    tl = _core.Timeline()
    assert tl.capacity == 65536
    assert tl.backend == "host"
    tl = _core.Timeline(capacity=8, device=-1)
    tl.mark(label=1, step=2)
    assert resolved(tl)["step"] == [2]


@pytest.mark.parametrize("capacity", [0, -1])
def test_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity"):
        _core.Timeline(capacity)
