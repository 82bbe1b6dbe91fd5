"""The Chrome trace-event / Perfetto export, on hand-built runs whose timelines are known exactly."""

import json
import subprocess
import sys
from collections import Counter

import pytest
from timelines import MS, host_marks, record

from llmprof.analysis.metrics import compute_request
from llmprof.analysis.record import Label
from llmprof.report import render
from llmprof.report.trace import HOST_BACKEND_NOTE, build_trace, trace_origin
from llmprof.runfile import Run

PHASES = {"B", "E", "X", "i", "I", "C", "M", "b", "n", "e", "s", "t", "f", "P", "O", "N", "D", "R", "c"}
THREAD_IDS = {"requests": 1, "host": 2, "device": 3, "tokens": 4}


def cuda_marks(steps, start, prep=2.0, prefill=40.0, decode=15.0, sample=1.0, gap=0.5, launch=0.3, sync=0.05):
    """A CUDA timeline: launches return after ``launch`` ms on the host, the device runs ``prefill``/``decode``
    and ``sample`` ms; each token is read on the host ``sync`` ms after it exists, and the next forward starts
    on the device ``gap`` ms after the previous token (the host gap)."""
    host = start + prep
    dev = host + 0.01
    marks = [
        (Label.REQUEST_START, 0, start, None),
        (Label.FORWARD_BEGIN, 0, host, dev),
        (Label.FORWARD_END, 0, host + launch, dev + prefill),
    ]
    dev += prefill + sample
    marks.append((Label.TOKEN, 1, dev + sync, dev))
    for k in range(2, steps + 1):
        host, dev = dev + sync + 0.1, dev + gap
        marks.append((Label.FORWARD_BEGIN, k - 1, host, dev))
        marks.append((Label.FORWARD_END, k - 1, host + launch, dev + decode))
        dev += decode + sample
        marks.append((Label.TOKEN, k, dev + sync, dev))
    return marks + [(Label.REQUEST_END, steps, dev + sync + 3.0, None)]


def host_run(telemetry=None):
    """1 warm-up + 2 repeats of a batch of 2 sequences generating 5 and 3 tokens."""
    records = [record(host_marks(5, start=100.0 + 200.0 * i), [5, 3], warmup=(i == 0)) for i in range(3)]
    return Run(
        config={"model": "hand", "batch_size": 2}, environment={}, records=records, telemetry=telemetry
    )


def cuda_run():
    records = [
        record(cuda_marks(4, start=50.0 + 150.0 * i), [4, 4], backend="cuda", warmup=(i == 0))
        for i in range(2)
    ]
    return Run(config={"model": "hand"}, environment={}, records=records)


def assert_valid_trace(doc):
    """The structure the trace-event format requires (JSON object format)."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    assert doc["displayTimeUnit"] in ("ms", "ns")
    assert all(isinstance(v, str) for v in doc["otherData"].values())
    for event in doc["traceEvents"]:
        assert event["ph"] in PHASES, event
        assert isinstance(event["name"], str) and event["name"], event
        assert type(event["pid"]) is int and type(event["tid"]) is int, event
        if event["ph"] != "M" or "ts" in event:
            assert type(event["ts"]) in (int, float) and event["ts"] >= 0, event
        if event["ph"] == "X":
            assert {"name", "cat", "ph", "ts", "dur", "pid", "tid"} <= event.keys(), event
            assert type(event["dur"]) in (int, float) and event["dur"] >= 0, event
        if event["ph"] == "i":
            assert event["s"] in ("g", "p", "t"), event
        if event["ph"] == "C":
            assert event["args"], event
            assert all(type(v) in (int, float) for v in event["args"].values()), event
        if event["ph"] == "M":
            assert event["name"] in {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}
    assert json.loads(json.dumps(doc)) == doc


def thread_names(doc):
    """(pid, tid) -> name, and pid -> name, from the metadata events."""
    meta = [e for e in doc["traceEvents"] if e["ph"] == "M"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    processes = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    return threads, processes


def events(doc, tid, ph="X"):
    return [e for e in doc["traceEvents"] if e["pid"] == 1 and e["tid"] == tid and e["ph"] == ph]


def within(items, span):
    """The events inside one request span."""
    return [e for e in items if span["ts"] <= e["ts"] <= span["ts"] + span["dur"]]


def test_rendered_trace_is_valid_json_of_the_built_document():
    for run in (host_run(), cuda_run()):
        doc = json.loads(render(run, "trace"))
        assert_valid_trace(doc)
        assert doc == json.loads(json.dumps(build_trace(run)))


def test_host_run_names_its_threads_and_omits_the_device_thread():
    doc = build_trace(host_run())
    threads, processes = thread_names(doc)
    assert processes == {1: "llmprof"}  # no telemetry: no telemetry process
    assert threads == {(1, 1): "requests", (1, 2): "host", (1, 4): "tokens"}
    assert not [e for e in doc["traceEvents"] if e.get("tid") == 3]
    assert doc["otherData"]["device thread"] == HOST_BACKEND_NOTE
    assert doc["otherData"]["config.model"] == "hand"
    assert doc["otherData"]["telemetry"] == "off"


def test_request_spans_cover_every_call_with_its_metrics():
    run = host_run()
    spans = events(build_trace(run), THREAD_IDS["requests"])
    assert [s["name"] for s in spans] == ["warm-up 1", "request 1", "request 2"]
    assert [s["cat"] for s in spans] == ["warm-up", "request", "request"]
    assert [s["ts"] for s in spans] == pytest.approx([0.0, 200_000.0, 400_000.0])  # µs from the first start
    for span, raw in zip(spans, run.records):
        m = compute_request(raw)
        assert span["dur"] == pytest.approx(m.latency * 1e6)
        assert span["args"]["tokens per sequence"] == [5, 3]
        assert span["args"]["TTFT (ms)"] == pytest.approx(m.ttft * 1e3)
        assert span["args"]["TPOT (ms)"] == pytest.approx(m.tpot * 1e3)
        assert span["args"]["latency (ms)"] == pytest.approx(m.latency * 1e3)
        assert span["args"]["TPS (tokens/s)"] == pytest.approx(m.tps, rel=1e-4)


def test_one_token_instant_per_step_with_the_sequences_still_generating():
    for run in (host_run(), cuda_run()):
        doc = build_trace(run)
        tokens = events(doc, THREAD_IDS["tokens"], ph="i")
        for span, raw in zip(events(doc, THREAD_IDS["requests"]), run.records):
            mine = within(tokens, span)
            steps = max(raw.tokens_per_sequence)
            assert len(mine) == steps
            assert [e["name"] for e in mine] == [f"token {k}" for k in range(1, steps + 1)]
            expected = [sum(n >= k for n in raw.tokens_per_sequence) for k in range(1, steps + 1)]
            assert [e["args"]["sequences generating"] for e in mine] == expected
            assert all(e["s"] == "t" for e in mine)


def test_host_thread_spans_match_the_host_stamps():
    doc = build_trace(host_run())
    request = events(doc, THREAD_IDS["requests"])[1]
    spans = within(events(doc, THREAD_IDS["host"]), request)
    durations = Counter((s["name"], round(s["dur"], 3)) for s in spans)
    assert durations == Counter(
        {
            ("host prep", 2000.0): 1,
            ("prefill", 40_000.0): 1,
            ("decode 2", 15_000.0): 1,
            ("decode 3", 15_000.0): 1,
            ("decode 4", 15_000.0): 1,
            ("decode 5", 15_000.0): 1,
            ("sampling", 1000.0): 5,
        }
    )
    prep = next(s for s in spans if s["name"] == "host prep")
    assert prep["ts"] == request["ts"]


def test_vision_encoder_span_nests_inside_host_prep():
    run = Run(config={}, environment={}, records=[record(host_marks(2, start=0.0, vision=7.0), [2])])
    doc = build_trace(run)
    assert_valid_trace(doc)
    spans = {s["name"]: s for s in events(doc, THREAD_IDS["host"])}
    vision, prep = spans["vision encoder"], spans["host prep"]
    assert vision["dur"] == pytest.approx(7000.0)
    assert prep["ts"] <= vision["ts"] and vision["ts"] + vision["dur"] <= prep["ts"] + prep["dur"]


def test_cuda_run_has_a_device_thread_with_the_host_gaps():
    run = cuda_run()
    doc = build_trace(run)
    assert_valid_trace(doc)
    threads, _ = thread_names(doc)
    assert threads[(1, THREAD_IDS["device"])] == "device"
    assert "CUDA" in doc["otherData"]["device thread"]
    device = events(doc, THREAD_IDS["device"])
    for span, raw in zip(events(doc, THREAD_IDS["requests"]), run.records):
        mine = within(device, span)
        gaps = [s for s in mine if s["name"] == "host gap"]
        assert [s["dur"] for s in gaps] == pytest.approx([500.0] * 3)  # the known 0.5 ms, steps 2..4
        breakdown = compute_request(raw).breakdown
        assert [s["dur"] for s in gaps] == pytest.approx([g * 1e6 for g in breakdown.step_host_gap])
        names = Counter(s["name"] for s in mine)
        assert names == Counter(
            {"prefill": 1, "decode 2": 1, "decode 3": 1, "decode 4": 1, "sampling": 4, "host gap": 3}
        )
        by_name = {s["name"]: s for s in mine}
        assert by_name["prefill"]["dur"] == pytest.approx(40_000.0)  # device time, not the 0.3 ms launch
        assert by_name["decode 3"]["dur"] == pytest.approx(15_000.0)
    host_prefill = next(s for s in events(doc, THREAD_IDS["host"]) if s["name"] == "prefill")
    assert host_prefill["dur"] == pytest.approx(300.0)  # the host thread shows the launch


def test_token_instants_use_device_times_when_present():
    run = cuda_run()
    doc = build_trace(run)
    origin = run.records[0].host_ns[0]
    raw = run.records[0]
    token_times = [d for label, d in zip(raw.label, raw.device_ns) if label == Label.TOKEN]
    first = events(doc, THREAD_IDS["tokens"], ph="i")[: len(token_times)]
    assert [e["ts"] for e in first] == pytest.approx([(t - origin) / 1000 for t in token_times])


def test_reversed_spans_are_clipped_to_zero():
    marks = cuda_marks(3, start=0.0)
    # the mapped device time of forward 2's start lands before token 1 (within the sync uncertainty)
    marks = [(m[0], m[1], m[2], m[3] - 1.0) if (m[0], m[1]) == (Label.FORWARD_BEGIN, 1) else m for m in marks]
    run = Run(config={}, environment={}, records=[record(marks, [3], backend="cuda")])
    doc = build_trace(run)
    assert_valid_trace(doc)
    gaps = [s for s in events(doc, THREAD_IDS["device"]) if s["name"] == "host gap"]
    assert [s["dur"] for s in gaps] == pytest.approx([0.0, 500.0])


def test_truncated_record_still_renders_with_the_reason():
    marks = host_marks(3, start=0.0)[:-3]  # interrupted: no token 3, no request end
    run = Run(config={}, environment={}, records=[record(marks, [3])], interrupted=True)
    doc = json.loads(render(run, "trace"))
    assert_valid_trace(doc)
    span = events(doc, THREAD_IDS["requests"])[0]
    assert "lacks the request start or end mark" in span["args"]["error"]
    assert len(events(doc, THREAD_IDS["tokens"], ph="i")) == 2


def nvml_snapshot(origin_ns):
    """Two GPUs sampled every 50 ms; the first probe is 2 intervals before the run, the second just before."""
    times = [
        origin_ns - 100 * MS,
        origin_ns - 10 * MS,
        origin_ns + 40 * MS,
        origin_ns + 90 * MS,
        origin_ns + 140 * MS,
    ]
    t_ns = [t for t in times for _ in range(2)]
    n = len(t_ns)
    return {
        "kind": "nvml",
        "reason": None,
        "interval_s": 0.05,
        "devices": [{"index": "0"}, {"index": "1"}],
        "samples": {
            "t_ns": t_ns,
            "device": ["0", "1"] * (n // 2),
            "gpu_util": [10 * i for i in range(n)],
            "mem_used_bytes": [2**30 * (i + 1) for i in range(n)],
            "sm_clock_mhz": [1980] * n,
            "power_w": [None, 300.5] * (n // 2),  # GPU 0 cannot report power
            "temperature_c": [60] * n,
            "clock_event_reasons": [0x1 | 0x4] * n,  # idle + SW power cap
        },
    }


def test_telemetry_counters_share_the_spans_clock():
    origin = round(100.0 * MS)  # host_run's first request start
    run = host_run(telemetry=nvml_snapshot(origin))
    doc = build_trace(run)
    assert_valid_trace(doc)
    _, processes = thread_names(doc)
    assert processes == {1: "llmprof", 2: "telemetry"}
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C"]
    assert {e["pid"] for e in counters} == {2}
    assert {e["name"] for e in counters} == {
        "GPU util (%)",
        "memory used (GiB)",
        "SM clock (MHz)",
        "power (W)",
        "temperature (C)",
        "clock throttle reasons (bitmask)",
    }
    samples = run.telemetry["samples"]
    kept = sorted({t for t in samples["t_ns"] if t >= origin})  # earlier ones would need ts < 0
    util = [e for e in counters if e["name"] == "GPU util (%)"]
    assert [e["ts"] for e in util] == pytest.approx([(t - origin) / 1000 for t in kept])
    assert util[0]["args"] == {"0": 40, "1": 50}  # rows 4 and 5: one event per probe, one arg per device
    memory = next(e for e in counters if e["name"] == "memory used (GiB)")
    assert memory["args"] == {"0": 5.0, "1": 6.0}
    power = [e for e in counters if e["name"] == "power (W)"]
    assert all(e["args"] == {"1": 300.5} for e in power)
    throttle = next(e for e in counters if e["name"] == "clock throttle reasons (bitmask)")
    assert throttle["args"] == {"0": 4, "1": 4}  # the idle bit is not throttling
    request = events(doc, THREAD_IDS["requests"])[0]
    assert request["ts"] == 0.0 and util[0]["ts"] == pytest.approx(40_000.0)


def test_process_telemetry_counters():
    origin = round(100.0 * MS)
    snapshot = {
        "kind": "process",
        "reason": "no GPU telemetry: the model runs on the CPU",
        "interval_s": 0.05,
        "devices": [{"index": "cpu"}],
        "samples": {
            "t_ns": [origin + 10 * MS, origin + 60 * MS],
            "device": ["cpu", "cpu"],
            "cpu_percent": [None, 150.0],
            "rss_bytes": [512 * 2**20, 768 * 2**20],
        },
    }
    doc = build_trace(host_run(telemetry=snapshot))
    assert_valid_trace(doc)
    counters = [(e["name"], e["ts"], e["args"]) for e in doc["traceEvents"] if e["ph"] == "C"]
    assert counters == [
        ("RSS (MiB)", 10_000.0, {"cpu": 512.0}),
        ("CPU (%)", 60_000.0, {"cpu": 150.0}),
        ("RSS (MiB)", 60_000.0, {"cpu": 768.0}),
    ]
    assert doc["otherData"]["telemetry"].startswith("process (no GPU telemetry")


def test_the_trace_module_imports_neither_torch_nor_nvml():
    code = (
        "import sys, llmprof.report.trace; print(sorted(m for m in ('torch', 'pynvml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_round_4_is_pythons_round_to_the_last_bit():
    """The counters' vectorized rounding against ``round(v, 4)``: random magnitudes, GiB of random byte
    counts, exact and near ties (k + 0.5 ten-thousandths), signed zeros, values too big to scale."""
    import math
    import random

    import numpy as np

    from llmprof.report.trace import round_4

    rng = random.Random(11)
    values = [rng.random() * 10 ** rng.randint(-6, 12) * rng.choice([1, -1]) for _ in range(20000)]
    values += [rng.randrange(1 << 34) / 2**30 for _ in range(20000)]
    values += [k / 20000 for k in range(-2000, 2000)] + [k / 1e4 + 5e-5 for k in range(-2000, 2000)]
    values += [0.0, -0.0, -1e-6, 2.0**60, 1e300, 37.0]
    got = round_4(np.array(values)).tolist()
    assert [(g, math.copysign(1, g)) for g in got] == [
        (round(v, 4), math.copysign(1, round(v, 4))) for v in values
    ]


def _counters_by_definition(samples: dict, origin: int) -> list[tuple]:
    """The JSON trace's counter events as documented, one sample at a time: per sample time (ascending), per
    field, a value per device (a later sample of the same device, field and time replacing the earlier)."""
    from llmprof.report.trace import COUNTERS, NOT_COUNTERS, THROTTLE_MASK

    rows: dict[int, dict[str, dict[str, float]]] = {}
    fields = [f for f in COUNTERS if f in samples] + [
        f for f in samples if f not in {*COUNTERS, *NOT_COUNTERS}
    ]
    for i, t in enumerate(samples["t_ns"]):
        if not isinstance(t, int) or t < origin:
            continue
        for field in fields:
            value = samples[field][i] if i < len(samples[field]) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if field == "clock_event_reasons":
                value = int(value) & THROTTLE_MASK
            value *= COUNTERS.get(field, (field, 1.0))[1]
            device = str(samples["device"][i]) if i < len(samples["device"]) else "0"
            rows.setdefault(t, {}).setdefault(field, {})[device] = round(value, 4)
    return [
        (COUNTERS.get(f, (f, 1.0))[0], (t - origin) / 1000, row[f])
        for t, row in sorted(rows.items())
        for f in fields
        if f in row
    ]


def test_counters_hold_every_sample_by_definition_even_irregular_ones():
    """Samples out of time order, a device sampled twice at one time, booleans, strings and None among the
    values, a short column, a short device column, a time that is not an integer and one before the run."""
    snapshot = nvml_snapshot(round(100.0 * MS))
    samples = snapshot["samples"]
    samples["t_ns"] = [samples["t_ns"][6]] + samples["t_ns"] + [samples["t_ns"][4], True, "x", 150 * MS]
    samples["gpu_util"] = [7] + samples["gpu_util"] + [99, 5, 5, 6]
    samples["power_w"] = [1.23456] + samples["power_w"] + [True, 1.0, "1.0", 0.333333]
    samples["clock_event_reasons"] = [4] + samples["clock_event_reasons"] + [0x4 | 0x1000, 4, 4, 4]
    samples["temperature_c"] = samples["temperature_c"][:3]
    samples["device"] = ["1"] + samples["device"] + ["0", "1", "0"]  # one short
    samples["fan_percent"] = [50] * len(samples["t_ns"])  # a field the trace does not know: shown as is
    run = host_run(telemetry=snapshot)
    doc = build_trace(run)
    origin = trace_origin(run)
    got = [(e["name"], e["ts"], e["args"]) for e in doc["traceEvents"] if e["ph"] == "C"]
    want = _counters_by_definition(samples, origin)
    assert got == want and any(name == "fan_percent" for name, *_ in got)
    assert [list(args) for *_, args in got] == [list(args) for *_, args in want]  # devices in sample order
