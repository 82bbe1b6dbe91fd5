"""A model over several GPUs in one process (device_map), end to end through the generate() hooks, on the
stand-in driver's two devices: a forward begins on the first GPU, ends (and its token exists) when both are done,
each GPU's events are mapped through its own calibration, and the devices table gives each GPU's stage."""

import json
import statistics

import pytest
import torch

import llmprof
from llmprof import _core
from llmprof.analysis.devices import device_stages, forward_stages
from llmprof.analysis.record import Label
from llmprof.cli import main
from llmprof.report.trace import TID_STAGES, build_trace
from llmprof.runfile import Run, load_run, save_run
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

MS = 1_000_000
DELAY_MS = 5.0


def profile_two_gpus(fake_cuda, repeats=2):
    """The synthetic model on a two-lane timeline; GPU 1 finishes its part DELAY_MS after each record (its
    events complete that late), GPU 0 at once."""
    model = synthetic_model(prefill_ms=8.0, decode_ms=3.0, eos_at=[6])
    with llmprof.Profiler(model, timeline=_core.Timeline(256, devices=[0, 1]), telemetry=False) as prof:
        for _ in range(repeats):  # the delay again after each call's closing calibration drained the queue
            fake_cuda.set_device_queue_delay_ns(1, int(DELAY_MS * MS))
            model.generate(**synthetic_prompt(1, 8), max_new_tokens=10)
        fake_cuda.set_queue_delay_ns(0)
    return prof


def test_forward_ends_and_tokens_wait_for_the_last_gpu(fake_cuda):
    prof = profile_two_gpus(fake_cuda)
    raw, r = prof.records[-1], prof.requests[-1]
    assert raw.backend == "cuda" and r.output_tokens == [6]
    for label, host, device in zip(raw.label, raw.host_ns, raw.device_ns):
        if label == Label.FORWARD_BEGIN:  # on GPU 0, which has nothing queued
            assert device - host == pytest.approx(0, abs=1 * MS)
        elif label in (Label.FORWARD_END, Label.TOKEN):  # GPU 1 is done DELAY_MS later
            assert device - host == pytest.approx(DELAY_MS * MS, abs=1 * MS)
    ends = raw.device_forward_ends
    assert list(ends) == ["cuda:0", "cuda:1"]
    host_ends = [h for label, h in zip(raw.label, raw.host_ns) if label == Label.FORWARD_END]
    assert len(ends["cuda:0"]) == len(host_ends) == 6
    assert statistics.median(e - h for e, h in zip(ends["cuda:0"], host_ends)) == pytest.approx(
        0, abs=0.5 * MS
    )
    assert statistics.median(e - h for e, h in zip(ends["cuda:1"], host_ends)) == pytest.approx(
        DELAY_MS * MS, abs=0.5 * MS
    )
    # the token times moved alike: TPOT is the host stamps' (same call), TTFT is DELAY_MS longer
    tokens = [h for label, h in zip(raw.label, raw.host_ns) if label == Label.TOKEN]
    assert r.tpot == pytest.approx((tokens[-1] - tokens[0]) / 1e9 / (len(tokens) - 1), rel=0.05)


def test_each_gpu_stage_against_the_same_calls_ground_truth(fake_cuda):
    """GPU 0's stage of a forward is the forward's own span (it is done when the host returns), GPU 1's the
    delay it adds: both checked against the same call's host stamps, per forward."""
    prof = profile_two_gpus(fake_cuda)
    for raw in prof.records:
        spans = {step: raw.host_ns[e] - raw.host_ns[b] for step, b, e in raw.marks.pairs(2, 3)}
        stages = forward_stages(raw)
        assert [step for step, _, _ in stages] == list(range(6))
        gpu0 = [s[0] - spans[step] for step, _, s in stages]
        gpu1 = [s[1] for _, _, s in stages]
        assert statistics.median(gpu0) == pytest.approx(0, abs=0.5 * MS)
        assert statistics.median(gpu1) == pytest.approx(DELAY_MS * MS, abs=0.5 * MS)
        # the stages add up to the forward's device time
        for step, start, s in stages:
            begin, end = next((b, e) for k, b, e in raw.marks.pairs(2, 3) if k == step)
            assert start == raw.device_ns[begin] and sum(s) == raw.device_ns[end] - raw.device_ns[begin]
    summary = device_stages(prof.records)
    assert [s.device for s in summary] == ["cuda:0", "cuda:1"]
    assert summary[1].decode_ms == pytest.approx(DELAY_MS, abs=0.5)
    assert summary[0].prefill_ms >= 8.0  # the prefill forward's programmed time, all on GPU 0
    assert summary[0].decode_share + summary[1].decode_share == pytest.approx(1.0)


def test_the_run_file_keeps_the_gpus_and_the_report_shows_them(fake_cuda, tmp_path, capsys):
    prof = profile_two_gpus(fake_cuda)
    path = tmp_path / "run.json"
    save_run(Run(config={}, environment={}, records=prof.records), path)
    back = load_run(path)
    assert back.records[-1].device_forward_ends == prof.records[-1].device_forward_ends
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Devices (2 GPUs, one process" in out
    rows = {
        cells[1]: cells[2:5]
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.split("│")]) == 6
    }
    assert float(rows["cuda:1"][1]) == pytest.approx(DELAY_MS, abs=0.5)  # the decode stage GPU 1 adds
    assert float(rows["cuda:0"][0]) >= 8.0  # the prefill forward, on GPU 0
    # the trace: a thread per GPU, one stage span per forward, GPU 1's starting where GPU 0's ends
    trace = build_trace(back)
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert names[TID_STAGES] == "stages (cuda:0)" and names[TID_STAGES + 1] == "stages (cuda:1)"
    stages = [e for e in trace["traceEvents"] if e.get("cat") == "stage"]
    assert len(stages) == 2 * 6 * len(back.records)
    on_gpu = [[e for e in stages if e["tid"] == TID_STAGES + lane] for lane in (0, 1)]
    for first, second in zip(*on_gpu, strict=True):  # the same forward's stages, in run order on each thread
        assert first["args"] == second["args"]
        assert second["ts"] == pytest.approx(first["ts"] + first["dur"], abs=0.01)
    assert statistics.median(e["dur"] for e in on_gpu[1]) == pytest.approx(DELAY_MS * 1e3, abs=500)
    # a broken per-device record is refused on load, naming the field
    data = json.loads(path.read_text())
    data["requests"][0]["device_forward_ends"]["cuda:1"].pop()
    path.write_text(json.dumps(data))
    with pytest.raises(
        llmprof.LlmprofError, match=r"requests\[0\]\.device_forward_ends\.cuda:1: 5 times for 6 forward ends"
    ):
        load_run(path)


def test_attach_builds_a_lane_per_gpu_on_torchs_streams(fake_cuda, monkeypatch):
    """A model whose parameters sit on cuda:1 and cuda:0 (stand-ins: only their devices are read), its input
    embeddings on cuda:1: the lanes are [1, 0], each on torch's current stream of its own device."""
    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0)

    class OnGpu:
        def __init__(self, index):
            self.device = torch.device("cuda", index)

    class Embeddings:
        weight = OnGpu(1)

    streams = {0: 0xA000, 1: 0xB000}
    for index, stream in streams.items():
        fake_cuda.set_stream_device(stream, index)

    class Stream:
        def __init__(self, device):
            self.cuda_stream = streams[torch.device(device).index]

    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    model.parameters = lambda: iter([OnGpu(0), OnGpu(1), OnGpu(0)])
    model.get_input_embeddings = lambda: Embeddings()
    prof = llmprof.Profiler(model, telemetry=False).attach()
    try:
        assert prof.timeline.devices == [1, 0] and prof.backend == "cuda"
        prof.timeline.mark(Label.FORWARD_END, 0)  # the stand-in refuses an event on another device's stream
        assert fake_cuda.device_last_record_stream(0) == 0xA000
        assert fake_cuda.device_last_record_stream(1) == 0xB000
    finally:
        prof.detach()


def test_device_map_on_the_command_line_says_why_it_cannot_run_here(capsys):
    """This machine has no GPU: --device-map is refused in one line before any model is loaded, as are its
    bad combinations."""
    assert torch.cuda.device_count() < 2
    assert main(["run", "--device-map", "auto", "--repeats", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        f"--device-map spreads the model over several GPUs, and this machine has {torch.cuda.device_count()}:"
        " use --device"
    )
    from llmprof.workloads.models import load_model

    for kwargs, message in [
        ({"device_map": "everywhere"}, "unknown --device-map 'everywhere'; choose from auto, balanced"),
        ({"device_map": "auto", "tp": True}, "--device-map and --tp"),
        ({"device_map": "auto", "device": "cpu"}, "does not go with --device cpu"),
    ]:
        with pytest.raises(llmprof.LlmprofError, match=message):
            load_model("demo", **kwargs)


def test_the_timeline_records_on_the_gpus_even_when_the_embeddings_are_offloaded():
    """A model partly offloaded to the CPU (its input embeddings there) still has its GPU work timed by that GPU's
    events, not by host stamps, which cannot see asynchronous GPU work."""
    from types import SimpleNamespace

    from llmprof.capture.timeline import timed_devices

    def on(*names):
        return [SimpleNamespace(device=torch.device(n)) for n in names]

    class Model(torch.nn.Module):
        def __init__(self, embeddings, params):
            super().__init__()
            self._embeddings, self._params = embeddings, params

        def get_input_embeddings(self):
            return SimpleNamespace(weight=self._embeddings)

        def parameters(self):
            return iter(self._params)

    offloaded = Model(on("cpu")[0], on("cpu", "cuda:0", "cuda:0"))
    assert timed_devices(offloaded) == [torch.device("cuda", 0)]
    spread = Model(on("cuda:1")[0], on("cuda:0", "cuda:1"))
    assert timed_devices(spread) == [torch.device("cuda", 1), torch.device("cuda", 0)]
    assert timed_devices(Model(on("cpu")[0], on("cpu"))) == [torch.device("cpu")]
