"""Telemetry: the samplers against a stand-in NVML, energy per request, and the per-request summary."""

import time

import pynvml
import pytest
from fake_nvml import FakeNvml

import llmprof
from llmprof.record import Label, RawRequest
from llmprof.sampling import NvmlSampler, ProcessSampler, make_sampler
from llmprof.sampling.base import MAX_INTERVAL_S, MIN_INTERVAL_S, default_interval
from llmprof.synthetic import synthetic_model, synthetic_prompt
from llmprof.telemetry import request_telemetry, run_warnings


def run_sampler(sampler, seconds=0.15):
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    return sampler.snapshot()


def test_nvml_sampler_records_every_field_on_the_host_clock():
    fake = FakeNvml(devices=2)
    before = time.monotonic_ns()
    snap = run_sampler(NvmlSampler([0, 1], interval_s=0.02, nvml=fake))
    s = snap["samples"]
    assert snap["kind"] == "nvml" and snap["power_source"] == "instant" and snap["reason"] is None
    assert len(s["t_ns"]) >= 6 and set(s["device"]) == {"0", "1"}
    assert before <= s["t_ns"][0] and s["t_ns"] == sorted(s["t_ns"]) and s["t_ns"][-1] <= time.monotonic_ns()
    assert (
        set(s["gpu_util"]) == {73} and set(s["mem_used_bytes"]) == {3 << 30} and set(s["power_w"]) == {350.0}
    )
    assert set(s["sm_clock_mhz"]) == {1980} and set(s["temperature_c"]) == {61}
    assert snap["devices"][0]["name"] == "NVIDIA Fake H100" and snap["devices"][1]["power_limit_w"] == 700.0
    assert snap["driver_version"] == "999.99"
    assert fake.initialized == 0  # shut down on stop


def test_one_unsupported_query_leaves_only_its_field_empty():
    fake = FakeNvml()
    fake.fail["nvmlDeviceGetTemperature"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    fake.instant_power_supported = False
    snap = run_sampler(NvmlSampler([0], interval_s=0.02, nvml=fake), 0.06)
    s = snap["samples"]
    assert set(s["temperature_c"]) == {None} and snap["errors"]["temperature_c"] == "Not Supported"
    assert set(s["gpu_util"]) == {73}
    assert snap["power_source"] == "average" and set(s["power_w"]) == {350.0}  # nvmlDeviceGetPowerUsage


def test_no_nvml_library_falls_back_to_the_process_sampler_with_the_reason():
    fake = FakeNvml()
    fake.fail["nvmlInit"] = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    sampler = make_sampler([0], interval_s=0.05, nvml=fake)
    assert isinstance(sampler, ProcessSampler)
    assert "NVML cannot be initialized: NVML Shared Library Not Found" in sampler.reason
    assert "model runs on the CPU" in make_sampler([], interval_s=0.05).reason


def test_a_failing_probe_never_stops_the_thread():
    fake = FakeNvml()
    fake.fail["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_GPU_IS_LOST
    snap = run_sampler(NvmlSampler([0], interval_s=0.02, nvml=fake), 0.1)
    assert len(snap["samples"]["t_ns"]) >= 4 and set(snap["samples"]["gpu_util"]) == {None}
    assert set(snap["samples"]["power_w"]) == {350.0}


def test_energy_per_request_and_its_limits():
    fake = FakeNvml()
    sampler = NvmlSampler([0], interval_s=0.05, nvml=fake)
    begin = sampler.request_begin()
    time.sleep(0.3)
    counters = sampler.request_end(begin, 0.3)
    assert counters["energy_j"] == pytest.approx(0.3 * 350.0, rel=0.15) and counters["energy_note"] is None
    short = sampler.request_end(sampler.request_begin(), 0.02)
    assert short["energy_j"] is None and "too short" in short["energy_note"]
    fake.energy_advances = False
    begin = sampler.request_begin()
    flat = sampler.request_end(begin, 0.5)
    assert flat["energy_j"] is None and "advanced 0 mJ" in flat["energy_note"]
    fake.fail["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    none = sampler.request_end(sampler.request_begin(), 0.5)
    assert none["energy_j"] is None and "no energy counter: Not Supported" in none["energy_note"]


def test_default_interval_follows_the_probe_cost():
    assert default_interval(0.0) == MIN_INTERVAL_S and default_interval(1.0) == MAX_INTERVAL_S
    assert default_interval(0.002) == pytest.approx(0.2)
    sampler = NvmlSampler([0], nvml=FakeNvml())
    sampler.start()
    sampler.stop()
    assert MIN_INTERVAL_S <= sampler.interval_s <= MAX_INTERVAL_S


def fake_request(start_ms, end_ms, tokens, counters=None):
    ms = 1_000_000
    return RawRequest(
        label=[Label.REQUEST_START, Label.TOKEN, Label.REQUEST_END],
        step=[0, 1, 1],
        host_ns=[start_ms * ms, start_ms * ms + 1, end_ms * ms],
        device_ns=[None, None, None],
        tokens_per_sequence=tokens,
        prompt_tokens=4,
        telemetry=counters or {},
    )


def test_request_summary_uses_only_samples_inside_the_request_and_warns():
    ms = 1_000_000
    telemetry = {
        "kind": "nvml",
        "samples": {
            "t_ns": [50 * ms, 100 * ms, 150 * ms, 200 * ms, 400 * ms],
            "gpu_util": [0, 90, 100, 80, 0],
            "sm_clock_mhz": [1980, 1980, 1500, 1980, 1980],
            "power_w": [80.0, 300.0, 400.0, 350.0, 80.0],
            "mem_used_bytes": [1, 5, 7, 6, 1],
            "clock_event_reasons": [0, 0, 0x4, 0, 0x40],
        },
        "devices": [{"index": "0", "other_processes_at_start": [4242]}],
    }
    t = request_telemetry(telemetry, fake_request(90, 210, [10, 20], {"energy_j": 42.0}))
    assert t.samples == 3
    assert t.gpu_util_mean == pytest.approx(90.0) and t.gpu_util_max == 100
    assert t.power_mean_w == pytest.approx(350.0) and t.mem_used_peak_bytes == 7
    assert t.energy_per_token_j == pytest.approx(42.0 / 30)
    assert "clocks throttled during the request: SW power cap" in t.warnings
    assert any("SM clock dropped from 1980 to 1500 MHz" in w for w in t.warnings)
    quiet = request_telemetry(telemetry, fake_request(300, 350, [1]))
    assert quiet.samples == 0 and quiet.gpu_util_mean is None and "no telemetry sample" in quiet.warnings[0]
    assert run_warnings(telemetry) == ["GPU 0 was already in use by other process(es) at start: pids [4242]"]


def test_profiler_records_energy_through_an_injected_nvml_sampler():
    sampler = NvmlSampler([0], interval_s=0.02, nvml=FakeNvml())
    model = synthetic_model(prefill_ms=50.0, decode_ms=20.0, eos_at=[8])
    with llmprof.profile(model, telemetry=sampler) as prof:
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=10)
    raw, telemetry = prof.records[-1], prof.telemetry
    t = request_telemetry(telemetry, raw)
    duration = prof.requests[-1].latency
    # energy per token x tokens == mean power x duration (the fake draws a constant 350 W)
    assert t.energy_per_token_j * 8 == pytest.approx(t.power_mean_w * duration, rel=0.15)
    assert t.samples >= 5 and t.gpu_util_mean == 73


def test_cpu_run_reports_process_cpu_and_rss():
    model = synthetic_model(prefill_ms=30.0, decode_ms=10.0, eos_at=[10])
    with llmprof.profile(model, sample_interval=0.02) as prof:
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=12)
    telemetry = prof.telemetry
    assert telemetry["kind"] == "process" and "runs on the CPU" in telemetry["reason"]
    t = request_telemetry(telemetry, prof.records[-1])
    assert 50 <= t.cpu_percent <= 210  # the forward busy-waits: about one core
    assert t.peak_rss_bytes > 50 << 20 and t.gpu_util_mean is None
