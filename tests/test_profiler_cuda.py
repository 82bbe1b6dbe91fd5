"""The Profiler on the CUDA timeline, end to end through the hooks, with the stand-in driver: device times
(events that complete a known delay after their record) flow into the metrics and the host-bound verdict."""

import pytest

import llmprof
from llmprof import _core
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

DELAY_MS = 5.0


def profile_on_fake_device(fake_cuda, delay_ms):
    """One request whose events complete ``delay_ms`` after their record (calibration itself on an idle device,
    as after the stream synchronization a real calibration does)."""
    fake_cuda.set_queue_delay_ns(0)
    model = synthetic_model(prefill_ms=20.0, decode_ms=4.0, eos_at=[6])
    with llmprof.Profiler(model, timeline=_core.Timeline(256, 0)) as prof:
        fake_cuda.set_queue_delay_ns(int(delay_ms * 1e6))
        model.generate(**synthetic_prompt(1, 8), max_new_tokens=10)
        fake_cuda.set_queue_delay_ns(0)
    return prof


def test_busy_device_shifts_token_times_and_is_not_host_bound(fake_cuda):
    idle = profile_on_fake_device(fake_cuda, 0.0).requests[-1]
    busy = profile_on_fake_device(fake_cuda, DELAY_MS)
    r, raw = busy.requests[-1], busy.records[-1]
    assert raw.backend == "cuda" and 0 < raw.sync_uncertainty_ns < 1e6
    events = [(h, d) for h, d in zip(raw.host_ns, raw.device_ns) if d is not None]
    assert len(events) == len(raw.label) - 2  # every mark but request start/end has a device time
    assert all(d - h == pytest.approx(DELAY_MS * 1e6, abs=1e6) for h, d in events)
    # T_1 is a device time: TTFT is the host-stamped TTFT plus the queue delay; TPOT is not moved by it
    first_token_host = raw.host_ns[raw.label.index(llmprof.Label.TOKEN)]
    host_ttft = (first_token_host - raw.host_ns[0]) / 1e9
    assert r.ttft - host_ttft == pytest.approx(DELAY_MS / 1e3, abs=1e-3)
    # the same call's host stamps: a constant queue delay moves every token alike, so TPOT stays
    tokens = [h for label, h in zip(raw.label, raw.host_ns) if label == llmprof.Label.TOKEN]
    assert r.tpot == pytest.approx((tokens[-1] - tokens[0]) / 1e9 / (len(tokens) - 1), rel=0.01)
    assert r.output_tokens == [6]
    assert r.breakdown.host_bound_share == 0.0
    assert idle.breakdown.host_bound_share == 1.0
    assert fake_cuda.count("cuEventRecord") >= 2 * len(events)


def test_an_idle_device_reads_host_bound_when_the_thread_stalls_before_a_record(fake_cuda):
    # Every other record waits 2 ms on its way into the driver (a descheduled thread, as on a loaded machine):
    # the stamp is taken after the record, so an event on the empty queue still runs no later than its stamp.
    fake_cuda.set_record_stall(2_000_000, 2)
    prof = profile_on_fake_device(fake_cuda, 0.0)
    r, raw = prof.requests[-1], prof.records[-1]
    stalled = [b - a for a, b in zip(raw.host_ns, raw.host_ns[1:])]
    assert sum(gap >= 2_000_000 for gap in stalled) >= len(stalled) // 3  # the stalls really happened
    assert raw.sync_uncertainty_ns < 1e6  # calibration kept an unstalled bracket
    assert r.breakdown.step_host_bound == [True] * (r.output_tokens[0] - 1)


def test_driver_errors_surface_from_generate_and_leave_the_model_clean(fake_cuda):
    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0)
    with llmprof.Profiler(model, timeline=_core.Timeline(64, 0)) as prof:
        fake_cuda.fail("cuEventRecord", 700)
        with pytest.raises(_core.CudaError, match="cuEventRecord.*CUDA_ERROR_ILLEGAL_ADDRESS"):
            model.generate(**synthetic_prompt(1, 4), max_new_tokens=3)
        fake_cuda.reset()
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=3)
    assert len(prof.requests) == 1 and prof.requests[0].output_tokens == [3]
    assert "generate" not in model.__dict__


def test_token_times_are_on_the_host_clock_when_the_device_clock_runs_fast(fake_cuda):
    fake_cuda.set_clock_skew_ppm(10_000)  # device clock 1% fast: unscaled, TPOT would read 1% long
    model = synthetic_model(prefill_ms=5.0, decode_ms=10.0)
    with llmprof.Profiler(model, timeline=_core.Timeline(256, 0)) as prof:
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=8)
    r, raw = prof.requests[-1], prof.records[-1]
    tokens = [h for label, h in zip(raw.label, raw.host_ns) if label == llmprof.Label.TOKEN]
    assert r.tpot == pytest.approx((tokens[-1] - tokens[0]) / 1e9 / (len(tokens) - 1), rel=0.003)
