"""A sweep of vLLM's engine in this process, on the demo model served by vLLM's CPU build (CI's vLLM stage; the
main stage skips these tests, the vLLM stage sets LLMPROF_REQUIRE_VLLM=1 so that they fail when vLLM cannot be
imported): one engine for the whole sweep, every point's run with the engine steps of its own calls."""

from __future__ import annotations

import itertools
import os

import pytest

if os.environ.get("LLMPROF_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm", reason="vLLM is not installed (CI's vLLM stage runs these)")

from run_cli import run_in_process

from llmprof.analysis.record import Label
from llmprof.sweepfile import OK, REFUSED, load_sweep

pytestmark = pytest.mark.vllm
ENGINE_ARGS = ["max_num_seqs=8", "enforce_eager=true", "max_model_len=256"]
SWEEP = ["sweep", "--engine", "vllm", "--dtype", "float32", *[f"--engine-arg={a}" for a in ENGINE_ARGS]]


def test_a_sweep_of_the_engine_gives_each_point_its_requests_and_its_own_engine_steps(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: vLLM takes most of the memory otherwise
    path = tmp_path / "sweep.json"
    args = [*SWEEP, "--batch-size", "1,3", "--prompt-len", "8", "--max-new-tokens", "4,6", "--ignore-eos"]
    args += ["--repeats", "2", "--warmup", "1", "--no-telemetry", "--json", str(path)]
    result = run_in_process(capsys, *args)
    assert result.returncode == 0, result.stderr
    assert "sweep of 4 points" in result.stderr and "no roofline with --engine vllm" in result.stderr
    sweep = load_sweep(path)
    assert sweep.config["request"]["engine"] == "vllm"
    assert sweep.config["request"]["engine_args"]["max_num_seqs"] == 8
    assert [p.status for p in sweep.points] == [OK] * 4
    spans = []
    for point in sweep.points:
        run, batch, tokens = point.run, point.params["batch_size"], point.params["max_new_tokens"]
        assert run.config["engine"] == "vllm" and run.config["sweep_point"] == point.params
        assert len(run.measured) == batch * 2 and len(run.records) == batch * 3  # and the warm-up's
        assert all(r.tokens_per_sequence == [tokens] and r.prompt_tokens == 8 for r in run.records)
        steps = run.engine_steps
        assert steps is not None and steps["begin_ns"]
        sampled = set(steps["sampled_ns"])
        for record in run.records:  # every token of the point's requests from a step of its own
            assert all(t in sampled for label, t in zip(record.label, record.host_ns) if label == Label.TOKEN)
        assert steps["warmup"][0] and not steps["warmup"][-1]
        spans.append((min(steps["begin_ns"]), max(steps["end_ns"])))
    spans.sort()
    assert all(end < begin for (_, end), (begin, _) in itertools.pairwise(spans))  # no step in two points

    table = run_in_process(capsys, "report", str(path))
    assert table.returncode == 0, table.stderr
    assert "batch_size" in table.stdout and "max_new_tokens" in table.stdout
    shown = run_in_process(capsys, "report", str(path), "--point", "batch_size=3,max_new_tokens=6")
    assert shown.returncode == 0, shown.stderr
    assert "Engine steps (" in shown.stdout

    # resumed with prompts that the engine's context cannot hold: refused in one line each, the rest kept
    resumed = [a if a != "8" else "8,300" for a in args[:-2]]
    result = run_in_process(capsys, *resumed, "--resume", str(path))
    assert result.returncode == 0, result.stderr
    assert "sweep of 4 points (4 already measured)" in result.stderr
    sweep = load_sweep(path)
    statuses = {point.key: point.status for point in sweep.points}
    assert sorted(statuses.values()) == [OK] * 4 + [REFUSED] * 4
    long = [p for p in sweep.points if p.params["prompt_len"] == 300]
    assert all("exceeds the engine's context of 256 tokens" in p.reason for p in long)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--depth", "0,64"], "--depth with sweep --engine vllm: not yet"),
        (["--variant", "attn=eager,sdpa"], "--variant with sweep --engine vllm: not yet"),
        (["--depth", "64", "--variant", "compile=off,on"], "--depth and --variant with sweep --engine vllm"),
        (["--attn-implementation", "sdpa"], "--attn-implementation with --engine vllm"),
    ],
)
def test_a_sweep_of_the_engine_refuses_what_it_does_not_take(capsys, options, message):
    result = run_in_process(capsys, *SWEEP, *options)
    assert result.returncode == 2, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert message in error


def test_a_sweep_of_generate_refuses_the_engines_options(capsys):
    result = run_in_process(capsys, "sweep", "--engine-arg", "max_num_seqs=8", "--batch-size", "1,2")
    assert result.returncode == 2 and "--engine-arg goes with --engine vllm" in result.stderr
    result = run_in_process(capsys, "sweep", "--request-rate", "4", "--batch-size", "1,2")
    assert result.returncode == 2 and "--request-rate goes with --engine vllm" in result.stderr
