"""The kernels of a step: a Kineto trace put on llmprof's clock and attributed to steps (hand-built GPU traces,
where kernels run after the step that launched them), the tables and the kernel diff, the run file's
``kernels``, and `run --kernels` / `ab --kernels` on the demo and on a synthetic model with named operators of
known cost."""

import json
import math
import subprocess
import sys

import pytest
import torch
from run_cli import run_in_process
from timelines import MS, host_marks, record

from llmprof.analysis.compare import compare_kernels, compare_runs
from llmprof.analysis.kernels import HOST, KernelCapture, kernel_diff, kernel_table
from llmprof.analysis.record import RawRequest
from llmprof.capture.kernels import CALIBRATION, choose_steps, from_kineto, parse_window, profile_call
from llmprof.capture.profiler import Profiler
from llmprof.errors import CaptureError, RunFormatError, UsageError
from llmprof.report.kernels import diff_section
from llmprof.runfile import Run, load_run
from llmprof.workloads.runner import profiled_call
from llmprof.workloads.synthetic import save_synthetic, synthetic_model, synthetic_prompt

BASE = 50_000_000  # the trace's baseTimeNanoseconds
OFFSET = 5_000  # llmprof's clock - Kineto's (ns)


def kineto_us(host_ns: int) -> float:
    """A host time as a Kineto ``ts`` (us from BASE)."""
    return (host_ns - OFFSET - BASE) / 1000


def x(name, cat, host_ns, dur_ns, tid=7, **args):
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "ts": kineto_us(host_ns),
        "dur": dur_ns / 1000,
        "tid": tid,
        "args": args,
    }


def gpu_trace(raw: RawRequest, steps: int):
    """A GPU-like trace: per step a host op launching a matmul kernel (1 ms) that runs 20 ms later, after the
    step's token, and a child op; a memcpy in the prefill; calibration ranges at exact stamps."""
    t_first = raw.host_ns[raw.marks.first(4)[1]]
    stamps = [raw.window[0] - 3 * MS + i * 1000 for i in range(3)] + [
        raw.window[1] + i * 1000 for i in range(3)
    ]
    events = [x(CALIBRATION, "user_annotation", s, 100) for s in stamps]
    for k in range(1, steps + 1):
        start = t_first - 20 * MS if k == 1 else raw.host_ns[raw.marks.first(4)[k - 1]] + MS
        events.append(x("aten::linear", "cpu_op", start, 2 * MS, **{"External id": k}))
        events.append(x("aten::mm", "cpu_op", start + MS // 2, MS))
        events.append(x("cudaLaunchKernel", "cuda_runtime", start + MS, 5000, correlation=100 + k))
        events.append(x("gemm_kernel", "kernel", start + 20 * MS, MS, tid=8, device=0, correlation=100 + k))
    events.append(x("cudaMemcpyAsync", "cuda_runtime", t_first - 30 * MS, 5000, correlation=1))
    events.append(x("Memcpy HtoD", "gpu_memcpy", t_first - 29 * MS, 200_000, tid=8, device=0, correlation=1))
    return {"baseTimeNanoseconds": BASE, "traceEvents": events}, stamps


def test_kineto_trace_is_aligned_and_kernels_go_to_the_step_that_launched_them():
    raw = record(host_marks(10), [10])  # T_1 = 143 ms, then a token every 16.5 ms
    doc, stamps = gpu_trace(raw, 10)
    capture = from_kineto(doc, raw, stamps, count=4)
    assert capture.steps == [1, 4, 5, 6, 7] and capture.alignment_ns == 0
    assert capture.step_ns == [43 * MS] + [round(16.5 * MS)] * 4
    assert capture.has_device
    e = capture.events
    kernels = [i for i, d in enumerate(e["device"]) if d == 0]
    # each kernel ran after its step's token, yet is its launching step's; start on llmprof's clock exactly
    assert sorted(e["step"][i] for i in kernels) == [1, 1, 4, 5, 6, 7]
    for i in kernels:
        if capture.names[e["name"][i]] == "gemm_kernel":
            k = e["step"][i]
            launch = (
                raw.host_ns[raw.marks.first(4)[k - 1]] + MS
                if k > 1
                else raw.host_ns[raw.marks.first(4)[1]] - 20 * MS
            )
            assert e["start_ns"][i] == launch + 20 * MS
    decode = kernel_table(capture, "decode")
    assert [(r.name, r.calls, r.time_ns) for r in decode.rows] == [("gemm_kernel", 1, MS)]
    assert decode.idle_share == pytest.approx(1 - 1 / 16.5)
    prefill = kernel_table(capture, "prefill")
    assert {r.name: r.time_ns for r in prefill.rows} == {"gemm_kernel": MS, "Memcpy HtoD": 200_000}
    # host operators are kept too, each by its self time (the child's time is the child's)
    host = {
        (capture.names[n], s): o
        for n, d, s, o in zip(e["name"], e["device"], e["step"], e["self_ns"])
        if d == HOST
    }
    assert host[("aten::linear", 5)] == MS and host[("aten::mm", 5)] == MS


def test_an_unaligned_trace_and_a_window_past_the_generation_are_errors():
    raw = record(host_marks(6), [6])
    doc, stamps = gpu_trace(raw, 6)
    with pytest.raises(CaptureError, match="calibration ranges"):
        from_kineto(doc, raw, stamps[:-1])
    with pytest.raises(CaptureError, match="no decode step in --kernels-steps 40:50"):
        from_kineto(doc, raw, stamps, window=(40, 50))


def test_steps_are_chosen_from_the_middle_or_the_window():
    assert choose_steps(21, 4, None) == [10, 11, 12, 13]
    assert choose_steps(3, 8, None) == [2, 3]
    assert choose_steps(30, 4, (28, 40)) == [28, 29, 30]
    assert choose_steps(1, 4, None) == []
    assert parse_window("10:17") == (10, 17)
    for bad in ("1:4", "9:3", "x", "4"):
        with pytest.raises(UsageError):
            parse_window(bad)


def capture_of(times: dict[str, list[float]], steps: list[int], step_ms: float = 10.0) -> KernelCapture:
    """A host-operator capture of one call with the given per-step times (ms) of each name."""
    names = list(times)
    events = {k: [] for k in ("name", "device", "step", "start_ns", "dur_ns", "self_ns")}
    for n, name in enumerate(names):
        for step, ms in zip(steps, times[name]):
            for key, value in zip(events, (n, HOST, step, 0, round(ms * MS), round(ms * MS))):
                events[key].append(value)
    return KernelCapture(names, events, steps, [round(step_ms * MS)] * len(steps))


def calls_of(per_call: dict[str, list[float]], step_ms: list[float], steps=(2, 3, 4, 5)) -> KernelCapture:
    """A capture of several calls: call c's steps take ``step_ms[c]``; name n's alternate around
    ``per_call[n][c]`` (+-0.1 ms), so that call's mean per step is exactly ``per_call[n][c]``."""
    return KernelCapture.join(
        [
            capture_of(
                {
                    n: [v[c] + (0.1 if i % 2 else -0.1) for i in range(len(steps))]
                    for n, v in per_call.items()
                },
                list(steps),
                step_ms[c],
            )
            for c in range(len(step_ms))
        ]
    )


def test_the_kernel_diffs_ci_is_over_calls_of_known_means():
    # per call: mm unchanged but B's second call slow (call-level noise), sdpa +1 ms in every call
    a = calls_of({"mm": [2.0, 2.1, 1.9], "sdpa": [1.0, 1.1, 0.9], "old": [0.3] * 3}, [10.0, 10.2, 9.8])
    b = calls_of({"mm": [2.0, 2.6, 1.95], "sdpa": [2.0, 2.1, 1.9], "new": [0.1] * 3}, [11.0, 11.7, 10.9])
    assert a.calls == 3 and b.calls == 3
    diff = kernel_diff(a, b, tpot_change_ns=0.9 * MS)
    changes = {c.name: c for c in diff.changes}
    # means over calls; Welch's interval by hand: sdpa, variances 0.01 a side, df 4, t 2.776: 1 +- 0.2267;
    # mm, B's variance 0.1308, df 2.3 (rounded down to 2), t 4.303: 0.1833 +- 0.9323
    assert (changes["sdpa"].a_ns, changes["sdpa"].b_ns) == pytest.approx((1.0 * MS, 2.0 * MS))
    assert (changes["sdpa"].ci_low_ns, changes["sdpa"].ci_high_ns) == pytest.approx(
        (0.7733 * MS, 1.2267 * MS), rel=1e-4
    )
    assert changes["mm"].change_ns == pytest.approx(0.18333 * MS, rel=1e-4)
    assert (changes["mm"].ci_low_ns, changes["mm"].ci_high_ns) == pytest.approx(
        (-0.7490 * MS, 1.1157 * MS), rel=1e-3
    )
    assert diff.changes[0].name == "sdpa"
    assert {c.name: diff.verdict(c) for c in diff.changes} == {
        "sdpa": "changed",
        "old": "removed",
        "new": "added",
        "mm": "no significant change",  # B's slow call widens its CI
    }


def test_too_few_calls_give_no_ci_and_a_note_that_says_so():
    one = kernel_diff(calls_of({"mm": [2.0]}, [10.0]), calls_of({"mm": [3.0]}, [11.0]), tpot_change_ns=MS)
    (change,) = one.changes
    assert change.change_ns == pytest.approx(MS) and math.isnan(change.ci_low_ns) and not change.significant
    assert one.verdict(change) == "no CI"
    section, notes = diff_section(one, "a", "b")
    assert section.rows == [["mm", "2.000", "3.000", "+1.000", "-", "no CI"]]
    assert "one captured call (A 1, B 1): no CI (it needs 3 calls a side: --kernel-calls)" in notes[0]
    two = kernel_diff(calls_of({"mm": [2.0, 2.0]}, [10.0] * 2), calls_of({"mm": [3.0] * 3}, [11.0] * 3))
    assert [two.verdict(c) for c in two.changes] == ["no CI"]
    assert "2 captured calls (A 2, B 3): no CI" in diff_section(two, "a", "b")[1][0]


def test_the_diff_adds_up_to_the_tpot_change():
    # A: step 10 ms = mm 2 + sdpa 1 + tiny 0.1 + 6.9 outside; B: step 11.5 = mm 2.02 + sdpa 2 + tiny 0.1 + 7.38
    a = calls_of({"mm": [2.0] * 3, "sdpa": [1.0] * 3, "tiny": [0.1] * 3}, [10.0] * 3)
    b = calls_of({"mm": [2.02] * 3, "sdpa": [2.0] * 3, "tiny": [0.1] * 3}, [11.5] * 3)
    diff = kernel_diff(a, b, tpot_change_ns=1.6 * MS)  # the measured repeats' TPOT change
    named, others, outside, rest = diff.accounting(12)
    # mm moved in every call, but by 0.2% of A's step: negligible, yet counted in the sum with the others
    assert [c.name for c in named] == ["sdpa"]
    assert diff.verdict(next(c for c in diff.changes if c.name == "mm")) == "negligible"
    assert others == pytest.approx(0.02 * MS) and outside == pytest.approx(0.48 * MS)
    assert rest == pytest.approx(0.1 * MS)  # 1.6 - (1.0 + 0.02 + 0.48)
    _, notes = diff_section(diff, "a", "b")
    assert "at least 0.5% of A's step (0.050 ms) (smaller: negligible; the sum below counts every" in notes[0]
    assert notes[-1] == (
        "TPOT +1.600 ms/step = sdpa +1.000 + 2 others +0.020 + outside operators +0.480 + rest +0.100"
        " (explained: sdpa 62%)"
    )
    assert kernel_diff(a, b).accounting(12) is None  # no TPOT change (a run without repeats' TPOT)
    later = capture_of({"mm": [2.0] * 4}, [12, 13, 14, 15])
    assert kernel_diff(a, later).warnings == [
        "the kernel captures are of different decode steps (A 2..5, B 12..15): their context lengths differ"
    ]


def test_a_capture_of_several_calls_keeps_them_in_the_run_file_and_tables_take_medians_over_calls(capsys):
    from llmprof.report import render

    capture = calls_of({"mm": [2.0, 4.0, 3.0]}, [10.0, 14.0, 12.0])
    data = json.loads(json.dumps(capture.to_dict()))
    assert data["events"]["call"] == [0] * 4 + [1] * 4 + [2] * 4
    assert data["later_step_ns"] == [[14 * MS] * 4, [12 * MS] * 4]
    assert KernelCapture.from_dict(data) == capture
    one = capture_of({"mm": [2.0] * 4}, [2, 3, 4, 5])
    assert "call" not in one.to_dict()["events"] and "later_step_ns" not in one.to_dict()  # as before
    table = kernel_table(capture, "decode")
    assert table.step_ns == 12 * MS and [(r.name, r.time_ns) for r in table.rows] == [("mm", 3 * MS)]
    for key, bad, message in [
        ("later_step_ns", [[MS] * 3], "kernels.later_step_ns"),
        ("call", [0] * 11 + [3], "a call that was not captured"),
    ]:
        broken = json.loads(json.dumps(data))
        (broken["events"] if key == "call" else broken)[key] = bad
        with pytest.raises(RunFormatError, match=message):
            KernelCapture.from_dict(broken)
    run = Run(config={}, environment={}, records=[record(host_marks(6), [6])], kernels=capture)
    csv = render(run, "csv", kernels=True).splitlines()
    assert csv[0] == "call,phase,step,name,device,calls,time_ns,step_ns"
    assert csv[1:3] == ["0,decode,2,mm,-1,1,1900000,10000000", "0,decode,3,mm,-1,1,2100000,10000000"]
    assert len(csv) == 13 and csv[-1] == "2,decode,5,mm,-1,1,3100000,12000000"


def test_the_run_file_keeps_the_capture_and_rejects_a_broken_one():
    raw = record(host_marks(10), [10])
    doc, stamps = gpu_trace(raw, 10)
    run = Run(config={}, environment={}, records=[raw], kernels=from_kineto(doc, raw, stamps, 4))
    data = json.loads(json.dumps(run.to_dict()))
    again = Run.from_dict(data)
    assert again.kernels == run.kernels
    for mutate, message in [
        (lambda k: k["events"]["step"].__setitem__(0, 3), "a step that was not captured"),
        (lambda k: k["events"]["name"].__setitem__(0, 99), "out of kernels.names"),
        (lambda k: k["events"]["dur_ns"].pop(), "different lengths"),
        (lambda k: k.__setitem__("steps", [1, 1, 5, 6, 7]), "distinct steps"),
        (lambda k: k["request"]["marks"].__setitem__("label", "x"), "kernels.request.marks.label"),
    ]:
        broken = json.loads(json.dumps(data))
        mutate(broken["kernels"])
        with pytest.raises(RunFormatError, match=message):
            Run.from_dict(broken)


def test_operators_are_on_llmprofs_clock_inside_the_forwards_that_ran_them():
    """Ground truth on the host clock: the synthetic model logs each forward's start and end; its op_a range
    (after 1 ms of the forward, before op_b) must lie inside the forward of its step."""
    model = synthetic_model(prefill_ms=2.0, decode_ms=1.0, ops={"op_a": 1.0, "op_b": 1.0})
    profiler = Profiler(model, telemetry=False)
    inputs = synthetic_prompt(1, 4)
    with profiler:
        capture = profile_call(
            lambda: profiled_call(profiler, inputs, True, max_new_tokens=12, min_new_tokens=12), 4
        )
    forwards = {generated + 1: (start, end) for start, end, generated in model.forward_log[-12:]}
    e = capture.events
    checked = 0
    for name, step, start, dur in zip(e["name"], e["step"], e["start_ns"], e["dur_ns"]):
        if capture.names[name] == "op_a":
            begin, end = forwards[step]
            assert begin < start and start + dur < end
            checked += 1
    assert checked == len(capture.steps) == 5


def test_run_kernels_on_the_demo_lists_its_matmuls_and_attention(tmp_path, capsys):
    out = tmp_path / "run.json"

    def cli(*args):
        return run_in_process(capsys, *args)

    result = cli(
        "run", "--kernels", "4", "--max-new-tokens", "12", "--repeats", "2", "--prompt-len", "16",
        "--ignore-eos", "--no-telemetry", "--format", "md", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "#### Kernels: decode (per step, median over 3 calls of 4 captured steps 5..8; host operators"
        in result.stdout
    )
    run = load_run(out)
    assert len(run.records) == 3  # the warm-up and the repeats: the profiled calls are not of them
    assert run.kernels.calls == 3
    decode = kernel_table(run.kernels, "decode")
    names = {r.name for r in decode.rows}
    assert "aten::mm" in names and any("scaled_dot_product" in n for n in names)
    assert 0 < decode.total_ns <= decode.step_ns
    csv = cli("report", str(out), "--format", "csv", "--kernels")
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0] == "call,phase,step,name,device,calls,time_ns,step_ns"
    assert {tuple(line.split(",")[:3:2]) for line in lines[1:]} == {
        (c, s) for c in "012" for s in ("1", "5", "6", "7", "8")
    }
    table = cli("report", str(out))
    assert "Kernels: prefill" in table.stdout and "outside operators" in table.stdout
    bare = tmp_path / "bare.json"
    assert cli("run", "--max-new-tokens", "4", "--repeats", "1", "--json", str(bare)).returncode == 0
    refused = cli("report", str(bare), "--format", "csv", "--kernels")
    assert refused.returncode == 2 and "has no kernels (run it with --kernels N)" in refused.stderr


@pytest.fixture(scope="module")
def ops_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "ops"
    # a 10 ms base step: 2% of it (the verdict's threshold) is well above a busy machine's jitter of a 1 ms op
    save_synthetic(path, prefill_ms=2.0, decode_ms=10.0, ops={"op_a": 1.0, "op_b": 1.0, "op_c": 1.0})
    (path.parent / "llmprof_test_slow_op.py").write_text(
        "def slow_b(model):\n    model.op_ms = {**model.op_ms, 'op_b': model.op_ms['op_b'] * 2}\n"
    )
    (path.parent / "llmprof_test_watch.py").write_text(
        "import os, torch\n"
        "def watch(model):\n"
        "    generate = model.generate\n"
        "    def watched(*args, **kwargs):\n"
        "        with open(os.environ['WATCH'], 'a') as f:\n"
        "            f.write('1' if torch.autograd.profiler._is_profiler_enabled else '0')\n"
        "        return generate(*args, **kwargs)\n"
        "    model.generate = watched\n"
    )
    return path


@pytest.fixture(scope="module")
def named_ops(tmp_path_factory):
    """The synthetic model with four named operators (2 ms of host work outside them a step: the default 15 ms
    spread the repeats' TPOT by as much as op_d's change on a loaded machine), and a patch making op_d 30%
    slower."""
    path = tmp_path_factory.mktemp("models") / "named"
    save_synthetic(path, decode_ms=2.0, ops={"op_a": 0.5, "op_b": 1.0, "op_c": 1.5, "op_d": 0.8})
    (path.parent / "llmprof_test_slow_d.py").write_text(
        "def slow_d(model):\n    model.op_ms = {**model.op_ms, 'op_d': model.op_ms['op_d'] * 1.3}\n"
    )
    return path


def test_ab_kernels_finds_the_one_slower_operator_and_accounts_for_the_tpot_change(
    named_ops, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(named_ops.parent)
    result = run_in_process(
        capsys,
        "ab", "--model", str(named_ops), "--b", "patch=llmprof_test_slow_d:slow_d", "--kernels", "8",
        "--repeats", "8", "--prompt-len", "4", "--max-new-tokens", "16", "--ignore-eos", "--no-telemetry",
        "--format", "md", "--json-a", str(tmp_path / "a.json"), "--json-b", str(tmp_path / "b.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    runs = [load_run(tmp_path / f"{v}.json") for v in "ab"]
    diff = compare_kernels(*runs)
    assert diff.calls == (3, 3)  # the default
    assert [c.name for c in diff.changes if diff.verdict(c) == "changed"] in (["op_d"], [])  # none other
    # the TPOT change, stated as its sum: the changed ones, the other operators, outside them, the rest
    (line,) = [line for line in lines if line.startswith("- TPOT ")]
    named, others, outside, rest = diff.accounting(12)
    terms = [f"{c.name} {c.change_ns / 1e6:+.3f}" for c in named]
    terms += [f"{len(diff.changes) - len(named)} others {others / 1e6:+.3f}"]
    terms += [f"outside operators {outside / 1e6:+.3f}", f"rest {rest / 1e6:+.3f}"]
    assert line.startswith(f"- TPOT {diff.tpot_change_ns / 1e6:+.3f} ms/step = " + " + ".join(terms))
    assert sum(c.change_ns for c in named) + others + outside + rest == pytest.approx(diff.tpot_change_ns)
    top = lines[lines.index(next(line for line in lines if line.startswith("#### Kernel diff: decode"))) + 4]
    assert top.startswith("| op_d |") and top.endswith("| changed |")
    op_d = diff.changes[0]
    assert op_d.change_ns == pytest.approx(0.24 * MS, rel=0.3) and op_d.ci_low_ns > 0
    # op_d explains 70-130% of the repeats' TPOT change, or lies within that change's own 95% CI (8 repeats of a
    # 7 ms step on a loaded machine: their TPOT change is known to +-0.1 ms, op_d's to +-0.03)
    tpot = next(c for c in compare_runs(*runs) if c.metric == "tpot")
    low, high = ((ratio - 1) * tpot.median_a * 1e9 for ratio in (tpot.ci_low, tpot.ci_high))
    assert 0.7 <= op_d.change_ns / diff.tpot_change_ns <= 1.3 or low <= op_d.change_ns <= high, (low, high)
    assert line.startswith(f"- TPOT {diff.tpot_change_ns / 1e6:+.3f} ms/step = op_d ")


# silu, mul and add four times an MLP, on a scratch tensor of its own: the MLP's own data (its matmuls' inputs
# and outputs) is left as it was, so an operator the patch does not call has no reason to move (on the MLP's
# output the extra passes slowed the next aten::mm by ~5% through the caches: a real change, not noise)
SLOW_MLP = """import torch
import torch.nn.functional as F


def install(model):
    for module in model.modules():
        if type(module).__name__.endswith("MLP"):
            forward = module.forward

            def slower(x, forward=forward):
                scratch = torch.ones(64)
                for _ in range(4):
                    scratch = scratch + F.silu(scratch) * 0.5
                return forward(x)

            module.forward = slower
"""


def test_ab_kernels_under_a_busy_core_changes_no_operator_the_patch_does_not_touch(
    tmp_path, capsys, monkeypatch
):
    """The demo with each MLP given silu+mul+add work, captured while a second process loads a core: the
    call-level noise (a captured call slowed as a whole) makes no untouched operator "changed"."""
    (tmp_path / "llmprof_test_slow_mlp.py").write_text(SLOW_MLP)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a second intra-op thread would spin against the hog (sdpa 10x slower): no test
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = run_in_process(
            capsys,
            "ab", "--b", "patch=llmprof_test_slow_mlp:install", "--kernels", "3", "--repeats", "2",
            "--max-new-tokens", "6", "--prompt-len", "4", "--ignore-eos", "--no-telemetry",
            "--json-a", str(tmp_path / "a.json"), "--json-b", str(tmp_path / "b.json"), "--format", "md",
        )  # fmt: skip
    finally:
        hog.kill()
        hog.wait()
        torch.set_num_threads(threads)
    assert result.returncode == 0, result.stderr
    runs = [load_run(tmp_path / f"{v}.json") for v in "ab"]
    diff = compare_kernels(*runs)
    assert diff.calls == (3, 3) and diff.has_ci
    # touched: called a different number of times a step (silu, mul, add and the allocation of their outputs)
    calls = [{r.name: r.calls for r in kernel_table(run.kernels, "decode").rows} for run in runs]
    touched = {n for n in calls[0].keys() | calls[1].keys() if calls[0].get(n) != calls[1].get(n)}
    assert {"aten::silu", "aten::mul", "aten::add"} <= touched
    changed = {c.name for c in diff.changes if diff.verdict(c) == "changed"}
    assert changed <= touched, result.stdout
    assert "- TPOT " in result.stdout


def test_the_profiled_call_comes_after_every_measured_one(ops_model, tmp_path, capsys, monkeypatch):
    watch = tmp_path / "watch.txt"
    monkeypatch.chdir(ops_model.parent)
    monkeypatch.setenv("WATCH", str(watch))
    result = run_in_process(
        capsys,
        "run", "--model", str(ops_model), "--patch", "llmprof_test_watch:watch", "--kernels", "2", "--repeats", "3",
        "--warmup", "1", "--prompt-len", "4", "--max-new-tokens", "6", "--no-telemetry",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert watch.read_text() == "0000111"  # warm-up and 3 repeats unprofiled, then the 3 profiled calls


def test_kernels_steps_and_kernel_calls_need_kernels_and_calls_one_or_more(capsys):
    result = run_in_process(capsys, "run", "--kernels-steps", "4:8", "--repeats", "1")
    assert result.returncode == 2 and "--kernels-steps goes with --kernels N" in result.stderr
    result = run_in_process(capsys, "ab", "--b", "attn=eager", "--kernel-calls", "2", "--repeats", "1")
    assert result.returncode == 2 and "--kernel-calls goes with --kernels N" in result.stderr
    result = run_in_process(capsys, "run", "--kernels", "2", "--kernel-calls", "0")
    assert result.returncode == 2 and "argument --kernel-calls: must be >= 1, got 0" in result.stderr


def test_the_trace_draws_kernels_on_llmprofs_clock_lined_up_with_their_steps():
    from llmprof.report.trace import TID_KERNELS, TID_OPERATORS, build_trace

    raw = record(host_marks(10), [10])
    doc, stamps = gpu_trace(raw, 10)
    run = Run(config={}, environment={}, records=[raw], kernels=from_kineto(doc, raw, stamps, 4))
    events = build_trace(run)["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert names[TID_OPERATORS] == "operators" and names[TID_KERNELS] == "kernels (device 0)"
    captured = [e for e in events if e.get("name") == "kernel capture"]
    assert len(captured) == 1
    # the captured call's token instants bound each of its steps: every operator starts inside its step
    tokens = {int(e["name"].split()[1]): e["ts"] for e in events if e.get("cat") == "token"}
    ops = [e for e in events if e.get("tid") == TID_OPERATORS and e["ph"] == "X"]
    assert ops and all(
        tokens.get(e["args"]["step"] - 1, -1) < e["ts"] <= tokens[e["args"]["step"]]
        for e in ops
        if e["args"]["step"] > 1
    )
    kernels = [e for e in events if e.get("tid") == TID_KERNELS and e.get("name") == "gemm_kernel"]
    step5 = next(e for e in kernels if e["args"]["step"] == 5)
    assert step5["ts"] == pytest.approx(tokens[4] + 21_000)  # launched 1 ms after token 4, ran 20 ms later


def test_the_plot_adds_a_panel_of_the_captured_steps():
    pytest.importorskip("matplotlib")
    from llmprof.report import render

    raw = record(host_marks(10), [10])
    doc, stamps = gpu_trace(raw, 10)
    with_kernels = Run(config={}, environment={}, records=[raw], kernels=from_kineto(doc, raw, stamps, 4))
    without = Run(config={}, environment={}, records=[raw])

    def height(png: bytes) -> int:  # the PNG's IHDR
        return int.from_bytes(png[20:24], "big")

    assert height(render(with_kernels, "plot")) == height(render(without, "plot")) + 420


def test_a_step_takes_its_time_from_device_times_and_its_work_from_host_stamps():
    """On a GPU the host runs ahead: operators and launches belong to a step by host stamps, but the step's own
    time (against which the kernels are summed) is the device's, as llmprof's ITL is."""
    marks = [
        (label, step, t, None if label in (0, 1) else t + 0.5 * step)  # the device falls 0.5 ms a step behind
        for label, step, t in host_marks(10)
    ]
    raw = record(marks, [10], backend="cuda")
    doc, stamps = gpu_trace(raw, 10)
    capture = from_kineto(doc, raw, stamps, count=4)
    assert capture.step_ns == [round(43.5 * MS)] + [17 * MS] * 4
    assert sorted(s for s, d in zip(capture.events["step"], capture.events["device"]) if d == 0) == [
        1,
        1,
        4,
        5,
        6,
        7,
    ]


def test_compare_plots_every_ratio_and_a_and_bs_kernels_side_by_side(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from llmprof.cli import main
    from llmprof.report.kernel_plot import diff_names
    from llmprof.runfile import save_run

    a = calls_of({"mm": [2.0] * 3, "sdpa": [1.0] * 3, "old_norm": [0.3] * 3}, [10.0] * 3)
    b = calls_of({"mm": [2.0] * 3, "sdpa": [2.0] * 3, "fused_norm": [0.1] * 3}, [10.0] * 3)
    paths = {}
    for name, capture in (("a", a), ("b", b), ("bare", None)):
        paths[name] = str(tmp_path / f"{name}.json")
        records = [record(host_marks(10), [10]) for _ in range(3)]
        save_run(Run(config={}, environment={}, records=records, kernels=capture), paths[name])

    def height(path) -> int:  # the PNG's IHDR
        return int.from_bytes(open(path, "rb").read()[20:24], "big")

    assert main(["compare", paths["a"], paths["b"], "--format", "plot", "-o", str(tmp_path / "k.png")]) == 0
    assert (
        main(["compare", paths["a"], paths["bare"], "--format", "plot", "-o", str(tmp_path / "r.png")]) == 0
    )
    assert height(tmp_path / "k.png") == height(tmp_path / "r.png") + 420  # the row of A's and B's kernels
    # both sides stacked by the same names: what changed, was added or removed first, then the largest
    assert diff_names(kernel_diff(a, b)) == ["sdpa", "old_norm", "fused_norm", "mm"]
    capsys.readouterr()
    assert main(["compare", paths["a"], paths["b"], "--format", "plot"]) == 2
    assert "give it a file with -o" in capsys.readouterr().err
