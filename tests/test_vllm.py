"""vLLM's engine profiled in-process, on the demo model served by vLLM's CPU build (CI's vLLM stage; the main
stage skips these tests, the vLLM stage sets LLMPROF_REQUIRE_VLLM=1 so that they fail when vLLM cannot be
imported). One engine is built for the module (about 40 s); the CLI's tests build their own."""

from __future__ import annotations

import os
import types
from collections import deque

import pytest

if os.environ.get("LLMPROF_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm", reason="vLLM is not installed (CI's vLLM stage runs these)")

from run_cli import run_in_process

import llmprof
from llmprof.analysis.metrics import compute_request
from llmprof.analysis.record import Label
from llmprof.capture.vllm_engine import UNTESTED_OK, VllmProfiler, engine_core
from llmprof.errors import CaptureError
from llmprof.runfile import load_run

pytestmark = pytest.mark.vllm
ENGINE = {"max_num_seqs": 8, "enforce_eager": True, "max_model_len": 256, "seed": 0, "dtype": "float32"}


@pytest.fixture(scope="module")
def llm():
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: vLLM takes most of the memory otherwise
    from vllm import LLM

    from llmprof.workloads.demo import demo_path

    return LLM(model=str(demo_path()), disable_log_stats=False, **ENGINE)


def prompts(n: int, length: int = 12) -> list:
    from vllm import TokensPrompt

    return [
        TokensPrompt(prompt_token_ids=[(7 * i + 3 * k) % 200 + 10 for k in range(length)]) for i in range(n)
    ]


def greedy(max_tokens: int, **options):
    from vllm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **options)


def steps_at(prof: VllmProfiler, sampled_ns: int) -> list[int]:
    return [i for i, t in enumerate(prof.steps["sampled_ns"]) if t == sampled_ns]


def test_each_request_gets_its_exact_tokens_and_every_token_time_is_its_steps_end_of_sampling(llm):
    probe = llm.generate(prompts(1), greedy(6, ignore_eos=True), use_tqdm=False)[0].outputs[0].token_ids
    stop = probe[2]  # the third token the first prompt makes: a stop token for it
    params = [greedy(5, ignore_eos=True), greedy(9, ignore_eos=True), greedy(3, ignore_eos=True)]
    params.append(greedy(12, stop_token_ids=[stop]))
    with llmprof.profile(llm, telemetry=False) as prof:
        outputs = llm.generate(prompts(3) + prompts(1), params, use_tqdm=False)
    records = prof.take(0)
    assert [r.engine["request_id"] for r in records] == [o.request_id for o in outputs]
    assert [r.tokens_per_sequence for r in records] == [[len(o.outputs[0].token_ids)] for o in outputs]
    assert [r.tokens_per_sequence for r in records] == [[5], [9], [3], [3]]
    assert [r.engine["finish_reason"] for r in records] == ["length", "length", "length", "stop"]
    steps = prof.steps
    for record in records:
        labels = record.label
        assert labels[:2] == [Label.REQUEST_START, Label.SCHEDULED] and labels[-1] == Label.REQUEST_END
        for label, t in zip(labels, record.host_ns):
            if label == Label.TOKEN:  # T_k: the end of sampling of the one step that produced it
                (step,) = steps_at(prof, t)
                assert steps["begin_ns"][step] <= steps["forward_end_ns"][step] <= t <= steps["end_ns"][step]
        assert record.host_ns == sorted(record.host_ns)
    assert sum(steps["prefill_tokens"]) == 4 * 12
    assert sum(steps["decode_tokens"]) == sum(sum(r.tokens_per_sequence) - 1 for r in records)


def test_token_times_are_never_later_than_vllms_own_and_ttft_agrees(llm):
    with llmprof.profile(llm, telemetry=False) as prof:
        outputs = llm.generate(
            prompts(4), [greedy(8 + 2 * i, ignore_eos=True) for i in range(4)], use_tqdm=False
        )
    for output, record in zip(outputs, prof.take(0)):
        metrics = compute_request(record)
        stats = output.metrics  # vLLM's RequestStateStats: monotonic seconds, stamped in output processing
        tokens = [t for label, t in zip(record.label, record.host_ns) if label == Label.TOKEN]
        step = steps_at(prof, tokens[0])[0]
        # vLLM stamps a token when the scheduler updates the request with the step's output: after llmprof's end
        # of sampling, within the step's output update (1 us for the float seconds vLLM keeps)
        assert tokens[0] <= stats.first_token_ts * 1e9 <= prof.steps["end_ns"][step] + 1000
        assert tokens[-1] <= stats.last_token_ts * 1e9
        # TTFT from the same arrival: llmprof's no later than vLLM's (the wall-to-monotonic offset is < 1 ms)
        assert metrics.ttft <= stats.first_token_latency + 1e-3
        assert stats.first_token_latency - metrics.ttft < 0.5  # the gap is output processing, not a step
        assert metrics.output_tokens == [stats.num_generation_tokens]


def test_requests_added_while_the_engine_steps_count_ttft_from_their_own_arrival(llm):
    engine = llm.llm_engine
    finished = {}
    with llmprof.profile(llm, telemetry=False) as prof:
        for i, prompt in enumerate(prompts(6)):  # one request a step, joining the running batch
            engine.add_request(f"late-{i}", prompt, greedy(6, ignore_eos=True))
            finished |= {o.request_id: o for o in engine.step() if o.finished}
        while engine.has_unfinished_requests():
            finished |= {o.request_id: o for o in engine.step() if o.finished}
    records = prof.take(0)
    assert [r.engine["request_id"].split("-")[1] for r in records] == [str(i) for i in range(6)]
    arrivals = [r.host_ns[0] for r in records]
    assert arrivals == sorted(arrivals) and len(set(arrivals)) == 6
    for record in records:  # against vLLM's own stamps of the same request
        metrics, stats = compute_request(record), finished[record.engine["request_id"]].metrics
        # TTFT from its own arrival (a later request's is not counted from the first one's): as vLLM's, no later
        assert -1e-4 < stats.first_token_latency - metrics.ttft < 0.5
        # scheduled: vLLM stamps it inside schedule(), llmprof right after it returns (1 us for float seconds)
        assert stats.scheduled_ts * 1e9 <= record.host_ns[1] + 1000
        assert record.host_ns[1] - stats.scheduled_ts * 1e9 < 0.5e9
    steps = prof.steps
    assert steps["requests"][:6] == [1, 2, 3, 4, 5, 6]  # each step's batch: the requests joined so far


def test_requests_past_max_num_seqs_wait_in_the_queue(llm):
    engine = llm.llm_engine
    with llmprof.profile(llm, telemetry=False) as prof:
        for i, prompt in enumerate(prompts(10)):  # 10 requests for 8 places: the last 2 wait for a finish
            engine.add_request(f"queued-{i}", prompt, greedy(4 + (i < 8), ignore_eos=True))
        while engine.has_unfinished_requests():
            engine.step()
    records = prof.take(0)
    queue = [compute_request(r).queue for r in records]
    first_finish = min(r.host_ns[-1] for r in records[:8])
    assert all(r.host_ns[1] >= first_finish for r in records[8:])  # scheduled once a place was free
    assert min(queue[8:]) > max(queue[:8])
    assert max(prof.steps["requests"]) == 8


def test_the_refusals_are_one_line(llm, monkeypatch):
    import vllm

    remote = types.SimpleNamespace(llm_engine=types.SimpleNamespace(engine_core=types.SimpleNamespace()))
    with pytest.raises(CaptureError, match="VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        engine_core(remote)
    overlapping = types.SimpleNamespace(scheduler=1, model_executor=1, batch_queue=deque())
    with pytest.raises(CaptureError, match="async scheduling"):
        engine_core(types.SimpleNamespace(engine_core=types.SimpleNamespace(engine_core=overlapping)))
    monkeypatch.setattr(vllm, "__version__", "0.99.1")
    with pytest.raises(CaptureError, match=r"vLLM 0.99.1 is not tested with llmprof \(tested: 0.32.x\)"):
        engine_core(llm)
    monkeypatch.setenv(UNTESTED_OK, "1")
    assert engine_core(llm) is llm.llm_engine.engine_core.engine_core
    with pytest.raises(TypeError, match=r"llmprof.profile\(llm\)"):
        llmprof.Profiler(llm)


def test_run_engine_vllm_end_to_end_then_report_in_every_format(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    path = tmp_path / "run.json"
    args = ["run", "--engine", "vllm", "--batch-size", "3", "--prompt-len", "10", "--max-new-tokens", "6"]
    args += ["--ignore-eos", "--repeats", "2", "--warmup", "1", "--dtype", "float32", "--no-telemetry"]
    args += [f"--engine-arg={k}={str(v).lower()}" for k, v in ENGINE.items() if k not in ("seed", "dtype")]
    result = run_in_process(capsys, *args, "--json", str(path))
    assert result.returncode == 0, result.stderr
    run = load_run(path)
    assert run.config["engine"] == "vllm" and run.config["engine_args"]["max_num_seqs"] == 8
    assert run.environment["versions"]["vllm"].startswith("0.32")
    assert len(run.measured) == 2 * 3 and all(r.tokens_per_sequence == [6] for r in run.measured)
    assert len(run.records) == 3 * 3 and run.engine_steps is not None
    steps = (
        run.engine_steps
    )  # the KV cache as each step holds it: never the freed blocks of its finished requests
    assert all(used > 0 for used, warm in zip(steps["kv_usage"], steps["warmup"]) if not warm)
    assert "[3/3] repeat done: 18 tokens" in result.stderr
    for fmt in ("table", "md", "csv", "json", "trace", "perfetto", "plot"):
        out = tmp_path / f"out.{fmt}"
        shown = run_in_process(capsys, "report", str(path), "--format", fmt, "-o", str(out))
        assert shown.returncode == 0, (fmt, shown.stderr)
        assert out.stat().st_size > 100, fmt


def test_run_engine_vllm_refuses_what_it_does_not_take(capsys):
    result = run_in_process(capsys, "run", "--engine", "vllm", "--compile")
    assert result.returncode == 2 and "--compile with --engine vllm" in result.stderr
    result = run_in_process(capsys, "run", "--engine", "vllm", "--nvtx")
    assert result.returncode == 2 and "--nvtx and --cuda-profiler-range with --engine vllm" in result.stderr
    result = run_in_process(capsys, "ab", "--engine", "vllm", "--b", "attn=eager")
    assert result.returncode == 2 and "variant B: attn= is not for engine=vllm" in result.stderr


SLOW_MLP = """
import time


def slower(model):
    for layer in model.model.layers:  # every MLP 10 ms slower: the forward phase of every step
        forward = layer.mlp.forward

        def slow(*args, _forward=forward, **kwargs):
            time.sleep(0.01)
            return _forward(*args, **kwargs)

        layer.mlp.forward = slow
"""


def engine_args() -> list[str]:
    return [f"--engine-arg={k}={str(v).lower()}" for k, v in ENGINE.items() if k not in ("seed", "dtype")]


def measured(capsys, args: str, path):
    """``python -m llmprof ARGS --engine-arg ... --json PATH`` in this process, then the run it saved."""
    result = run_in_process(capsys, *args.split(), *engine_args(), "--json", str(path))
    assert result.returncode == 0, result.stderr
    return load_run(path)


def forward_ms(run) -> float:
    import statistics

    steps = run.engine_steps
    rows = [i for i, warm in enumerate(steps["warmup"]) if not warm]
    return statistics.median((steps["forward_end_ns"][i] - steps["scheduled_ns"][i]) / 1e6 for i in rows)


def test_ab_a_patch_that_slows_the_mlp_shows_in_the_steps_and_the_verdict(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llmprof_test_slow_vllm.py").write_text(SLOW_MLP)
    args = "ab --engine vllm --b patch=llmprof_test_slow_vllm:slower --batch-size 2 --prompt-len 8"
    args += (
        " --max-new-tokens 8 --ignore-eos --warmup 2 --repeats 6 --dtype float32 --no-telemetry --format md"
    )
    args = [*args.split(), *engine_args(), "--json-a", "a.json", "--json-b", "b.json"]
    result = run_in_process(capsys, *args)
    assert result.returncode == 0, result.stderr
    a, b = load_run(tmp_path / "a.json"), load_run(tmp_path / "b.json")
    # ground truth in B's own steps: the demo's six MLPs sleep 10 ms each in every forward
    steps = b.engine_steps
    forwards = [
        e - s for s, e, w in zip(steps["scheduled_ns"], steps["forward_end_ns"], steps["warmup"]) if not w
    ]
    assert min(forwards) >= 6 * 10e6 and forward_ms(b) > forward_ms(a)
    tpot = next(line for line in result.stdout.splitlines() if line.startswith("| TPOT"))
    assert tpot.endswith("slower |"), tpot
    assert b.config["variant"]["patch"] == "llmprof_test_slow_vllm:slower" and b.config["engine"] == "vllm"


def test_ab_generate_against_vllm_on_the_same_prompts(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    args = "ab --a engine=hf --b engine=vllm --batch-size 2 --prompt-len 8 --max-new-tokens 6 --ignore-eos"
    args += " --repeats 4 --dtype float32 --no-telemetry --format md"
    args = [
        *args.split(),
        *engine_args(),
        "--json-a",
        str(tmp_path / "a.json"),
        "--json-b",
        str(tmp_path / "b.json"),
    ]
    result = run_in_process(capsys, *args)
    assert result.returncode == 0, result.stderr
    a, b = load_run(tmp_path / "a.json"), load_run(tmp_path / "b.json")
    assert [r.tokens_per_sequence for r in a.measured] == [[6, 6]] * 4
    assert [r.tokens_per_sequence for r in b.measured] == [[6]] * 8
    assert a.config["prompt_tokens"] == b.config["prompt_tokens"] == 8
    # a batch's throughput against one request's is no comparison: said, never a verdict
    tps = next(line for line in result.stdout.splitlines() if line.startswith("| TPS"))
    assert "not comparable: a generate() batch against an engine's requests" in tps
    assert "engine differs" not in result.stdout and "attn differs" not in result.stdout


def test_request_rate_adds_each_request_at_its_seeded_poisson_arrival(capsys, tmp_path, monkeypatch):
    import itertools
    import random

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    path = tmp_path / "rate.json"
    args = "run --engine vllm --request-rate 20 --batch-size 6 --prompt-len 8 --max-new-tokens 6 --ignore-eos"
    args += " --repeats 1 --warmup 0 --seed 3 --dtype float32 --no-telemetry"
    run = measured(capsys, args, path)
    assert run.config["request_rate"] == 20.0 and len(run.measured) == 6
    rng = random.Random(3)  # the arrivals the seed draws, the same every call
    offsets = [0.0, *itertools.accumulate(rng.expovariate(20.0) for _ in range(5))]
    starts = [r.host_ns[0] for r in run.measured]
    assert [(t - starts[0]) / 1e9 for t in starts] == pytest.approx(offsets, abs=1e-4)
    for record in run.measured:  # each TTFT from its own arrival, queueing inside: as vLLM's own, no later
        metrics = compute_request(record)
        assert -1e-4 < record.engine["reported"]["ttft_s"] - metrics.ttft < 0.5
        assert 0 <= metrics.queue <= metrics.ttft


def test_engine_options_go_with_an_engine(capsys):
    result = run_in_process(capsys, "run", "--engine-arg", "max_num_seqs=8")
    assert result.returncode == 2 and "--engine-arg goes with --engine vllm" in result.stderr
    result = run_in_process(capsys, "run", "--request-rate", "4")
    assert result.returncode == 2 and "--request-rate goes with --engine vllm" in result.stderr
    result = run_in_process(capsys, "run", "--request-rate", "0")
    assert result.returncode == 2 and "requests per second > 0" in result.stderr


def test_kernels_of_the_engine_steps(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    path = tmp_path / "kernels.json"
    args = "run --engine vllm --kernels 2 --kernel-calls 2 --batch-size 2 --prompt-len 8 --max-new-tokens 10"
    args += " --ignore-eos --repeats 1 --warmup 0 --dtype float32 --no-telemetry"
    run = measured(capsys, args, path)
    kernels = run.kernels
    assert kernels is not None and kernels.steps[0] == 1 and len(kernels.steps) == 3  # the prefill step + 2
    assert set(kernels.events["step"]) == set(kernels.steps) and len(kernels.names) > 3
    assert len(set(kernels.events["call"])) == 2  # the two kernel-profiled calls, joined
    # the kernel calls' steps are kept as warm-up steps: the measured steps are the repeat's alone
    steps = run.engine_steps
    assert sum(not warm for warm in steps["warmup"]) == 10  # one prefill step, then 9 decode steps
    kernels_md = run_in_process(capsys, "report", str(path), "--format", "md")
    assert kernels_md.returncode == 0 and "decode step" in kernels_md.stdout.lower()
