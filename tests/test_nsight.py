"""Nsight ranges on one call: NVTX ranges per request and step from the compiled timeline's step marks, the CUDA
profiler range around chosen decode steps through the (stand-in) driver, their failures kept and said, and the
CLI's one-line refusals without a GPU."""

import pytest
import torch

import llmprof
from llmprof import Label, _core
from llmprof.capture.nsight import REQUEST_RANGE, StepRanges, observing, step_name
from llmprof.cli import main
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt


class RecordingNvtx:
    """torch.cuda.nvtx's push/pop, each kept with its host time."""

    def __init__(self):
        self.calls = []

    def range_push(self, msg):
        self.calls.append(("push", msg, _core.host_now_ns()))

    def range_pop(self):
        self.calls.append(("pop", None, _core.host_now_ns()))


def ranges_of(calls):
    """(name, pushed at, popped at) of each range, in push order; asserts they are balanced."""
    stack, out = [], []
    for kind, name, at in calls:
        if kind == "push":
            stack.append(len(out))
            out.append([name, at, None])
        else:
            out[stack.pop()][2] = at
    assert not stack
    return [tuple(r) for r in out]


def marks(raw, label):
    return {step: raw.host_ns[i] for step, i in raw.marks.first(label).items()}


def test_nvtx_ranges_are_llmprofs_steps_in_a_generate_call():
    model = synthetic_model(prefill_ms=4.0, decode_ms=2.0, eos_at=[6])
    nvtx = RecordingNvtx()
    with llmprof.profile(model) as prof:
        with observing(StepRanges(nvtx=nvtx)) as ranges:
            model.generate(**synthetic_prompt(1, 4), max_new_tokens=10)
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=10)  # not observed
    raw = prof.records[0]
    got = ranges_of(nvtx.calls)
    assert [name for name, _, _ in got] == [REQUEST_RANGE] + [step_name(k) for k in range(1, 7)]
    assert len(nvtx.calls) == 2 * 7 and not ranges.errors  # nothing from the second call
    begins, tokens = marks(raw, Label.FORWARD_BEGIN), marks(raw, Label.TOKEN)
    start, end = raw.window
    assert start <= got[0][1] and got[0][2] >= end  # the request's range holds the request
    for k, (_, pushed, popped) in enumerate(got[1:], 1):
        # opened right after its forward's begin mark, closed right after its token T_k, before the next forward
        assert begins[k - 1] <= pushed <= tokens[k] <= popped <= begins.get(k, end)
        assert got[0][1] <= pushed and popped <= got[0][2]


def recorded_loop(rec, steps, model):
    """A decode loop of one's own through the Recorder: ``steps`` tokens, one synthetic forward each."""
    ids = synthetic_prompt(1, 4)["input_ids"]
    with torch.no_grad(), rec.request(batch=1, prompt_tokens=4):
        with rec.prefill():
            model(input_ids=ids)
        rec.token()
        for _ in range(steps - 1):
            with rec.forward():
                model(input_ids=ids[:, -1:])
            rec.token()
    return rec.records[-1]


def test_the_profiler_range_brackets_the_chosen_decode_steps(fake_cuda):
    model = synthetic_model(prefill_ms=2.0, decode_ms=1.0)
    rec = llmprof.Recorder()
    ranges = StepRanges(profiler=lambda start: _core.cuda_profiler_range(0, start), window=(3, 5))
    with observing(ranges):
        raw = recorded_loop(rec, 8, model)
    assert not ranges.errors and ranges.started and ranges.stopped
    assert [fake_cuda.count(f) for f in ("cuProfilerStart", "cuProfilerStop", "cuCtxSynchronize")] == [
        1,
        1,
        1,
    ]
    assert fake_cuda.ctx_depth() == 0  # the primary context was pushed for the calls and popped
    begins, ends, tokens = (
        marks(raw, Label.FORWARD_BEGIN),
        marks(raw, Label.FORWARD_END),
        marks(raw, Label.TOKEN),
    )
    # started inside step 3's forward (the one producing token 3), stopped after T_5, before step 6's forward
    assert begins[2] <= fake_cuda.profiler_stamp(stop=False) <= ends[2]
    assert tokens[5] <= fake_cuda.profiler_stamp(stop=True) <= begins[5]


def test_a_request_that_ends_inside_the_window_stops_the_range_at_its_end(fake_cuda):
    rec = llmprof.Recorder()
    ranges = StepRanges(profiler=lambda start: _core.cuda_profiler_range(0, start), window=(3, 50))
    with observing(ranges):
        raw = recorded_loop(rec, 6, synthetic_model(prefill_ms=1.0, decode_ms=1.0))
    assert [fake_cuda.count(f) for f in ("cuProfilerStart", "cuProfilerStop")] == [1, 1]
    assert fake_cuda.profiler_stamp(stop=True) >= raw.window[1]  # at the request's end, after every token


def test_a_window_past_the_generation_starts_nothing(fake_cuda):
    ranges = StepRanges(profiler=lambda start: _core.cuda_profiler_range(0, start), window=(9, 12))
    with observing(ranges):
        recorded_loop(llmprof.Recorder(), 4, synthetic_model(prefill_ms=1.0, decode_ms=1.0))
    assert [fake_cuda.count(f) for f in ("cuProfilerStart", "cuProfilerStop")] == [0, 0]


def test_a_driver_without_the_profiler_calls_is_said_and_the_call_goes_on(use_fake_cuda):
    fake = use_fake_cuda("FAKE_NO_PROFILER")
    with pytest.raises(_core.CudaError, match="has no cuProfilerStart"):
        _core.cuda_profiler_range(0, True)
    nvtx = RecordingNvtx()
    ranges = StepRanges(nvtx=nvtx, profiler=lambda start: _core.cuda_profiler_range(0, start), window=(2, 3))
    with observing(ranges):
        raw = recorded_loop(llmprof.Recorder(), 5, synthetic_model(prefill_ms=1.0, decode_ms=1.0))
    assert len(ranges.errors) == 1 and "cuProfilerStart" in ranges.errors[0]  # once, then that part is off
    assert sorted(raw.marks.first(Label.TOKEN)) == [1, 2, 3, 4, 5]
    assert len(ranges_of(nvtx.calls)) == 6  # the NVTX part went on
    assert fake.count("cuCtxSynchronize") == 0


def test_a_failing_nvtx_is_kept_and_turned_off_without_unbalanced_pops():
    class Broken(RecordingNvtx):
        def range_push(self, msg):
            if msg == step_name(3):
                raise RuntimeError("NVTX functions not installed")
            super().range_push(msg)

    nvtx = Broken()
    ranges = StepRanges(nvtx=nvtx)
    with observing(ranges):
        raw = recorded_loop(llmprof.Recorder(), 5, synthetic_model(prefill_ms=1.0, decode_ms=1.0))
    assert ranges.errors == ["NVTX range_push: NVTX functions not installed"]
    got = ranges_of(nvtx.calls)  # no range after; the request's still closed, once, at its end
    assert [name for name, _, _ in got] == [REQUEST_RANGE, step_name(1), step_name(2)]
    assert got[0][2] >= raw.window[1]


def test_an_observer_that_raises_never_breaks_the_call(monkeypatch):
    seen = []
    monkeypatch.setattr("sys.unraisablehook", seen.append)

    def broken(label, step):
        raise ValueError("observer bug")

    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0, eos_at=[4])
    with llmprof.profile(model) as prof, observing(broken):
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=8)
    assert prof.requests[-1].output_tokens == [4]
    assert seen and all(isinstance(u.exc_value, ValueError) for u in seen)


def test_the_cli_says_in_one_line_why_nsight_ranges_do_nothing_on_cpu(capsys, tmp_path):
    args = [
        "run",
        "--model",
        "demo",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--max-new-tokens",
        "4",
        "--prompt-len",
    ]
    assert main([*args, "4", "--nvtx", "--cuda-profiler-range", "--json", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "did nothing" in line]
    why = "the model runs on cpu, not on a CUDA device: Nsight has no GPU work to capture"
    assert said == [f"llmprof: --nvtx and --cuda-profiler-range did nothing: {why}"]
    run = llmprof.runfile.load_run(tmp_path / "r.json")
    assert len(run.records) == 1 and run.kernels is None  # no extra call was made or kept


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kernels", "2", "--cuda-profiler-range"], "both need CUPTI"),
        (["--kernels-steps", "2:3"], "--kernels-steps goes with --kernels N or --cuda-profiler-range"),
        (["--cuda-profiler-range", "--kernels-steps", "1:3"], "decode steps start at 2"),
    ],
)
def test_nsight_options_that_do_not_go_together_are_one_line_errors(capsys, extra, message):
    assert main(["run", "--model", "demo", "--repeats", "1", *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
