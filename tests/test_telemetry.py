"""Telemetry: the samplers against a stand-in NVML, energy per request, and the per-request summary."""

import itertools
import os
import statistics
import threading
import time

import pynvml
import pytest
from fake_nvml import FakeNvml

import llmprof
from llmprof.analysis.record import Label, RawRequest
from llmprof.analysis.telemetry import request_telemetry, run_warnings
from llmprof.capture.sampling import NvmlSampler, ProcessSampler, Sampler, make_sampler
from llmprof.capture.sampling.base import MAX_INTERVAL_S, MIN_INTERVAL_S, default_interval
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt


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
    start = time.monotonic()
    begin = sampler.request_begin()
    time.sleep(0.3)
    counters = sampler.request_end(begin, 0.3)
    elapsed = time.monotonic() - start
    assert (
        counters["energy_j"] == pytest.approx(elapsed * 350.0, rel=0.02) and counters["energy_note"] is None
    )
    begin = sampler.request_begin()
    time.sleep(0.02)  # the counter advances, but the request is shorter than its update period
    short = sampler.request_end(begin, 0.02)
    assert short["energy_j"] is None and "too short for the energy counter" in short["energy_note"]
    fake.energy_advances = False
    begin = sampler.request_begin()
    flat = sampler.request_end(begin, 0.5)
    assert flat["energy_j"] is None and "did not advance" in flat["energy_note"]
    fake.fail["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    none = sampler.request_end(sampler.request_begin(), 0.5)
    assert none["energy_j"] is None and "no energy counter: Not Supported" in none["energy_note"]


def test_default_interval_follows_the_probe_cost():
    assert default_interval(0.0) == MIN_INTERVAL_S and default_interval(1.0) == MAX_INTERVAL_S
    assert default_interval(0.002) == pytest.approx(0.2) and default_interval(0.0, minimum=0.2) == 0.2
    assert ProcessSampler().min_interval_s == 0.2  # CPU runs: fewer wake-ups stealing torch's cores
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
    assert t.samples == 3 and t.source == "polled"
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
    assert t.samples >= 5 and t.gpu_util_mean == 73 and t.source == "buffered"


def process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def test_cpu_run_reports_process_cpu_and_rss():
    model = synthetic_model(prefill_ms=30.0, decode_ms=10.0, eos_at=[10])
    with llmprof.profile(model, sample_interval=0.02) as prof:
        cpu, wall = process_cpu_s(), time.monotonic()
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=12)
        cpu, wall = process_cpu_s() - cpu, time.monotonic() - wall
    telemetry = prof.telemetry
    assert telemetry["kind"] == "process" and "runs on the CPU" in telemetry["reason"]
    t = request_telemetry(telemetry, prof.records[-1])
    # the process's CPU over the request against the test's own reading around the same call (which also
    # holds the profiler's begin and end: the one loose end)
    assert t.cpu_percent == pytest.approx(100 * cpu / wall, rel=0.1)
    assert t.peak_rss_bytes > 50 << 20 and t.gpu_util_mean is None and t.source is None


# -- driver-buffered samples (nvmlDeviceGetSamples) ---------------------------------------------------------
BUFFERED = ["power_w", "gpu_util", "sm_clock_mhz"]


def by_series(buffered):
    """(device, field) -> [(t_ns, value), ...] in the order collected."""
    out = {}
    for t, device, name, value in zip(
        buffered["t_ns"], buffered["device"], buffered["field"], buffered["value"]
    ):
        out.setdefault((device, name), []).append((t, value))
    return out


def test_buffered_samples_are_collected_once_each_on_the_host_clock():
    fake = FakeNvml(devices=2)
    fake.sample_value_types[pynvml.NVML_GPU_UTILIZATION_SAMPLES] = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    fake.sample_value_types[pynvml.NVML_PROCESSOR_CLK_SAMPLES] = pynvml.NVML_VALUE_TYPE_DOUBLE
    time.sleep(0.05)  # samples from before the sampler started are not the run's
    before = time.monotonic_ns()
    sampler = NvmlSampler([0, 1], interval_s=0.05, nvml=fake)
    snap = run_sampler(sampler, 0.3)
    after = time.monotonic_ns()
    assert snap["buffered_fields"] == BUFFERED and not any(k.startswith("buffered") for k in snap["errors"])
    assert snap["buffered_clock"]["offset_uncertainty_ns"] < 1_000_000
    series = by_series(snap["buffered"])
    assert set(series) == {(d, f) for d in ("0", "1") for f in BUFFERED}
    fake_start_ns = round(fake._start * 1e9)
    for (device, name), rows in series.items():
        times = [t for t, _ in rows]
        assert times == sorted(set(times))  # increasing: no duplicate across probes
        assert before <= times[0] and times[-1] <= after
        # one every 10 ms of the run: none lost, none twice
        assert (after - before) / 10e6 - 8 <= len(times) <= (after - before) / 10e6 + 1
        for t in times:  # on the fake's 10 ms grid, mapped from the wall clock to within a millisecond
            phase = (t - fake_start_ns) % 10_000_000
            assert min(phase, 10_000_000 - phase) < 1_000_000
        values = {v for _, v in rows}
        assert values == {"power_w": {350.0}, "gpu_util": {73}, "sm_clock_mhz": {1980.0}}[name]
    # each (device, type) asked from 0 first, then from the newest stamp it had seen
    for handle in (("handle", 0), ("handle", 1)):
        stamps = [ts for h, kind, ts in fake.samples_requested if h == handle and kind == 0]
        assert stamps[0] == 0 and stamps[1] > 0 and stamps == sorted(stamps)
    # the polled series is unchanged by them
    assert set(snap["samples"]["power_w"]) == {350.0} and set(snap["samples"]["device"]) == {"0", "1"}


def test_buffered_type_not_supported_is_dropped_alone_and_reported():
    fake = FakeNvml()
    fake.samples_fail[pynvml.NVML_PROCESSOR_CLK_SAMPLES] = pynvml.NVML_ERROR_NOT_SUPPORTED
    snap = run_sampler(NvmlSampler([0], interval_s=0.02, nvml=fake), 0.15)
    assert snap["errors"]["buffered sm_clock_mhz"] == "Not Supported"
    assert snap["buffered_fields"] == ["power_w", "gpu_util"]
    assert set(snap["buffered"]["field"]) == {"power_w", "gpu_util"}
    asked = [kind for _, kind, _ in fake.samples_requested]
    assert asked.count(pynvml.NVML_PROCESSOR_CLK_SAMPLES) == 1  # never asked again
    assert asked.count(pynvml.NVML_TOTAL_POWER_SAMPLES) >= 5
    assert set(snap["samples"]["sm_clock_mhz"]) == {1980}  # the polled clock is unaffected


def test_buffered_transient_errors_and_no_new_sample_are_quiet():
    fake = FakeNvml()
    fake.samples_fail[pynvml.NVML_GPU_UTILIZATION_SAMPLES] = pynvml.NVML_ERROR_UNKNOWN
    sampler = NvmlSampler([0], interval_s=10.0, nvml=fake)  # probes only at start() and stop()
    sampler.start()
    assert sampler.snapshot()["errors"] == {"buffered gpu_util": "Unknown Error"}  # nothing from it yet
    del fake.samples_fail[pynvml.NVML_GPU_UTILIZATION_SAMPLES]
    time.sleep(0.05)
    sampler.stop()
    snap = sampler.snapshot()
    assert snap["errors"] == {} and snap["buffered_fields"] == BUFFERED  # it recovered: no error left
    # a buffer with nothing new (NVML answers NotFound) is no error either
    fake = FakeNvml()
    fake.sample_period_s = 100.0  # one sample, taken before the sampler started
    snap = run_sampler(NvmlSampler([0], interval_s=0.02, nvml=fake), 0.06)
    assert snap["errors"] == {} and snap["buffered_fields"] == [] and snap["buffered"]["t_ns"] == []
    assert len(fake.samples_requested) >= 9


@pytest.mark.parametrize(
    ("offset_us", "says"), [(10_000_000, "10 s ahead of"), (-(time.time_ns() // 1000), "behind")]
)
def test_buffered_stamps_off_the_wall_clock_are_rejected(offset_us, says):
    fake = FakeNvml()
    fake.sample_stamp_offset_us = offset_us  # e.g. a driver stamping on another time base
    snap = run_sampler(NvmlSampler([0], interval_s=0.02, nvml=fake), 0.06)
    assert snap["buffered"]["t_ns"] == [] and snap["buffered_fields"] == []
    assert says in snap["errors"]["buffered power_w"] and "not on it" in snap["errors"]["buffered power_w"]
    assert [kind for _, kind, _ in fake.samples_requested].count(0) == 1  # disabled after the first look


def buffered_snapshot():
    """Polled samples every 50 ms; driver-buffered ones every 10 ms that disagree with them."""
    ms = 1_000_000
    times = list(range(80, 230, 10))  # 80 .. 220 ms
    util = {t: 40 + t // 10 for t in times}  # 48 .. 62
    return {
        "kind": "nvml",
        "samples": {
            "t_ns": [50 * ms, 100 * ms, 150 * ms, 200 * ms, 400 * ms],
            "device": ["0"] * 5,
            "gpu_util": [0, 90, 100, 80, 0],
            "sm_clock_mhz": [1980, 1980, 1980, 1980, 1980],
            "power_w": [80.0, 300.0, 400.0, 350.0, 80.0],
            "mem_used_bytes": [1, 5, 7, 6, 1],
            "clock_event_reasons": [0, 0, 0, 0, 0],
        },
        "buffered": {  # util and power interleaved, out of time order across fields, as the sampler appends
            "t_ns": [t * ms for t in times] * 2 + [120 * ms, 130 * ms],
            "device": ["0"] * (2 * len(times) + 2),
            "field": ["gpu_util"] * len(times) + ["power_w"] * len(times) + ["sm_clock_mhz"] * 2,
            "value": [util[t] for t in times] + [200.0] * len(times) + [1980, 1400],
        },
        "buffered_fields": BUFFERED,
    }


def test_request_summary_prefers_buffered_samples():
    telemetry = buffered_snapshot()
    t = request_telemetry(telemetry, fake_request(90, 210, [10]))
    assert t.source == "buffered" and t.samples == 3  # the polled rows still count (and give the memory peak)
    assert t.gpu_util_mean == pytest.approx(statistics.fmean(range(49, 62))) and t.gpu_util_max == 61
    assert t.power_mean_w == pytest.approx(200.0) and t.mem_used_peak_bytes == 7
    assert t.sm_clock_mean_mhz == pytest.approx(1690.0)
    assert any("SM clock dropped from 1980 to 1400 MHz" in w for w in t.warnings)  # seen only by buffered
    # a request between two polls: buffered samples only, so no "no sample" warning
    short = request_telemetry(telemetry, fake_request(102, 118, [1]))
    assert short.samples == 0 and short.gpu_util_mean == 51 and short.warnings == []
    # clock samples only where the request is not: clocks polled, the rest buffered
    mixed = request_telemetry(telemetry, fake_request(140, 210, [1]))
    assert mixed.source == "mixed" and mixed.sm_clock_mean_mhz == 1980 and mixed.power_mean_w == 200.0


def test_request_summary_falls_back_to_polled_samples():
    telemetry = buffered_snapshot()
    late = request_telemetry(telemetry, fake_request(300, 410, [1]))  # after the buffered samples end
    assert late.source == "polled" and late.samples == 1 and late.power_mean_w == 80.0
    telemetry["buffered"] = {"t_ns": [], "device": [], "field": [], "value": []}  # e.g. all NotSupported
    t = request_telemetry(telemetry, fake_request(90, 210, [10]))
    assert t.source == "polled" and t.gpu_util_mean == pytest.approx(90.0) and t.power_mean_w == 350.0
    del telemetry["buffered"]  # a run saved before buffered samples existed
    assert request_telemetry(telemetry, fake_request(90, 210, [10])).source == "polled"


def test_multi_gpu_power_is_summed_like_energy_and_a_clock_ramp_is_no_drop():
    ms = 1_000_000
    telemetry = {
        "kind": "nvml",
        "samples": {
            "t_ns": [100 * ms, 100 * ms, 150 * ms, 150 * ms],
            "device": ["0", "1", "0", "1"],
            "power_w": [340.0, 360.0, 340.0, 360.0],
            "sm_clock_mhz": [345, 1980, 1980, 1980],  # device 0 ramps up from idle
        },
    }
    t = request_telemetry(telemetry, fake_request(90, 210, [5], {"energy_j": 70.0}))
    assert t.power_mean_w == pytest.approx(700.0)  # two GPUs: energy / duration is their sum
    assert not any("dropped" in w for w in t.warnings)


class ExplodingSampler(Sampler):
    """The Python sampling thread (NVML's) with a probe that fails after ``fail_after`` calls."""

    kind = "exploding"

    def __init__(self, fail_after):
        super().__init__(interval_s=0.01)
        self.fail_after, self.probes = fail_after, 0

    def probe(self):
        self.probes += 1
        if self.probes > self.fail_after:
            raise RuntimeError("probe exploded")
        return [{"device": "cpu", "value": self.probes}]


def test_the_process_sampler_samples_on_a_native_thread_at_its_interval():
    sampler = ProcessSampler(interval_s=0.01)
    sampler.start()
    assert not any(t.name.startswith("llmprof-") for t in threading.enumerate())  # no Python thread
    time.sleep(0.1)
    sampler.stop()
    samples = sampler.snapshot()["samples"]
    times = samples["t_ns"]
    assert 6 <= len(times) <= 14 and times == sorted(times)  # the first, ~9 on the thread, the last
    assert all(r > 0 for r in samples["rss_bytes"]) and all(0 <= c < 800 for c in samples["cpu_percent"][1:])
    sampler.stop()  # idempotent
    assert len(sampler.snapshot()["samples"]["t_ns"]) == len(times)


def test_a_probe_that_raises_keeps_the_thread_alive_and_says_why():
    sampler = ExplodingSampler(fail_after=2)
    sampler.start()
    time.sleep(0.08)
    probes = sampler.probes
    time.sleep(0.05)
    assert sampler.probes > probes  # still sampling
    sampler.stop()
    assert sampler.snapshot()["errors"]["probe"] == "RuntimeError: probe exploded"


def test_a_sampler_that_cannot_start_leaves_the_model_untouched():
    sampler = ExplodingSampler(fail_after=0)
    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0)
    with pytest.raises(RuntimeError, match="probe exploded"):
        llmprof.Profiler(model, telemetry=sampler).attach()
    assert "generate" not in model.__dict__ and not hasattr(model, "_llmprof_profiler")
    with llmprof.profile(model, telemetry=False) as prof:  # and a later profiler attaches fine
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=2)
    assert len(prof.requests) == 1


def test_own_process_is_never_another_process_in_a_container():
    from llmprof.capture.sampling.nvml import own_pids

    fake = FakeNvml()
    fake.other_pids = [*own_pids(), 4242]
    snap = run_sampler(NvmlSampler([0], interval_s=0.05, nvml=fake), 0.01)
    assert snap["devices"][0]["other_processes_at_start"] == [4242]
    assert os.getpid() in own_pids()


def test_every_gpu_a_device_map_model_uses_is_sampled(monkeypatch):
    from types import SimpleNamespace

    import torch

    from llmprof.capture.profiler import nvml_devices

    on = [SimpleNamespace(device=torch.device(name)) for name in ("cuda:1", "cuda:0", "cuda:1", "cpu")]
    model = SimpleNamespace(parameters=lambda: on[:3], buffers=lambda: on[3:])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=f"uuid-{i}"))
    assert nvml_devices(model) == ["GPU-uuid-1", "GPU-uuid-0"]  # each GPU once, in order of first use
    cpu_only = SimpleNamespace(parameters=lambda: on[3:], buffers=list)
    assert nvml_devices(cpu_only) == []


@pytest.mark.parametrize("interval", [0, 1e-9, float("inf"), float("nan"), 1e6, "fast"])
def test_a_sampling_interval_out_of_bounds_is_refused_by_the_library_too(interval):
    with pytest.raises(ValueError, match="sampling interval must be"):
        llmprof.Profiler(synthetic_model(), sample_interval=interval)
    with pytest.raises(ValueError, match="sampling interval must be"):
        ProcessSampler(interval)


class _TwoGpus(Sampler):
    """A sampler of two devices whose probe costs nothing: the bounding rule alone decides what is kept."""

    kind = "fake"

    def probe(self):
        return [{"device": "0", "gpu_util": 50}, {"device": "1", "gpu_util": 60}]


def test_an_hour_of_5_ms_sampling_keeps_memory_flat(monkeypatch):
    """An hour at 5 ms on a fake clock, a request of 10 s starting every minute: 720k probes taken, at most
    max_probes kept, about as many at 60 minutes as at 30 (flat); every request keeps the same share (the
    resolution halves over the whole run, not only its start), at the stride the snapshot states; between
    requests, past the 10 s after each, one probe a second."""
    from types import SimpleNamespace

    from llmprof.capture.sampling import base
    from llmprof.capture.sampling.bounded import IDLE_GRACE_NS, MAX_PROBES

    clock = SimpleNamespace(t=10**12)
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic_ns=lambda: clock.t))
    sampler = _TwoGpus(interval_s=0.005)  # max_probes: the default
    tick, minute = 5_000_000, 60_000_000_000
    kept, windows = {}, []
    for i in range(720_000):
        clock.t += tick
        phase = (i * tick) % minute
        if phase == 0:
            begin = sampler.begin_request()
            windows.append([clock.t, None])
        elif phase == 10_000_000_000:
            sampler.end_request(begin, 10.0)
            windows[-1][1] = clock.t
        sampler.sample_once()
        if i + 1 in (360_000, 720_000):
            kept[(i + 1) // 12_000] = sampler.probes
    times = sampler.snapshot()["samples"]["t_ns"]
    assert len(times) == 2 * sampler.probes  # two rows a probe, never one without the other
    assert max(kept.values()) <= MAX_PROBES and abs(kept[60] - kept[30]) < 0.5 * kept[30]
    probes = sorted(set(times))

    def within(start, end):
        return [t for t in probes if start <= t <= end]

    shares = [len(within(*w)) for w in windows]
    assert min(shares) >= 0.8 * max(shares) and min(shares) > 100  # the first request as the last
    stride = sampler.stride
    last = within(*windows[-1])
    assert stride > 1 and {b - a for a, b in itertools.pairwise(last)} == {stride * tick}
    idle = within(windows[-1][1] - minute + IDLE_GRACE_NS, windows[-1][0] - 1)  # the previous minute's quiet
    assert idle and min(b - a for a, b in itertools.pairwise(idle)) >= 1_000_000_000
    decimated = sampler.snapshot()["decimated"]
    assert "every probe inside a request" in decimated["rule"] and decimated["stride"] == stride
    note = run_warnings(sampler.snapshot())
    dropped, halvings = decimated["dropped between requests"], decimated["halvings"]
    expected = (
        f"telemetry thinned to stay bounded ({decimated['rule']}): {dropped} probes dropped between requests"
    )
    assert note == [f"{expected}, {halvings} halvings: one probe kept in {stride}"]


def test_a_sampler_no_one_tells_of_requests_keeps_every_probe():
    """A decode loop of one's own (run --loop) brackets no request for the sampler: nothing is taken for
    "between requests", and only the bound thins it, uniformly."""
    sampler = _TwoGpus(interval_s=0.005, max_probes=1000)
    for i in range(1500):
        sampler._append(10**12 + i * 5_000_000, sampler.probe())  # 7.5 s at 5 ms
    assert sampler.dropped["between requests"] == 0
    kept = sorted(set(sampler.series["t_ns"]))
    assert sampler.stride == 2 and {b - a for a, b in itertools.pairwise(kept)} == {10_000_000}


def test_buffered_nvml_samples_are_halved_per_device_and_field():
    """Two GPUs' buffered samples past the bound: every other sample of each GPU's series goes, both GPUs
    keep their share."""
    from collections import Counter

    from llmprof.capture.sampling.bounded import halve, series_ordinals

    columns = {
        "t_ns": list(range(16)),
        "device": ["0", "1"] * 8,
        "field": ["power_w"] * 16,
        "value": [1.0] * 16,
    }
    halve(columns, series_ordinals(columns["device"], columns["field"]))
    assert Counter(columns["device"]) == {"0": 4, "1": 4} and columns["t_ns"] == [0, 1, 4, 5, 8, 9, 12, 13]
