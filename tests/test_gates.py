"""--fail-on as a CI gate: a threshold it cannot judge (too few repeats, a metric or a sweep point missing on one
side) fails loudly, one line each, unless --allow-unjudged; a real regression still fails. Hand-built runs of
known decode times, no clock."""

import random

from run_cli import run_in_process
from timelines import host_marks, record

from llmprof.runfile import Run, save_run
from llmprof.sweepfile import FAILED, Sweep, SweepPoint, save_sweep


def run_of(decode_ms: float, repeats: int, seed: int = 0, batch: int = 1) -> Run:
    """A warm-up and ``repeats`` requests of ``batch`` x 10 tokens whose forwards take ``decode_ms`` with 1%
    noise."""
    rng = random.Random(seed)
    records = [
        record(
            host_marks(10, start=1000.0 * i, decode=decode_ms * rng.lognormvariate(0.0, 0.01)),
            [10] * batch,
            prompt=4,
            warmup=i == 0,
        )
        for i in range(repeats + 1)
    ]
    return Run(config={"model": "synthetic", "dtype": "float32"}, environment={}, records=records)


def saved_runs(tmp_path, b_ms: float, repeats: int) -> tuple[str, str]:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_run(run_of(8.0, repeats, seed=1), a)
    save_run(run_of(b_ms, repeats, seed=2), b)
    return str(a), str(b)


def unjudged(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "cannot judge" in line]


def test_a_gate_on_3_repeats_fails_naming_what_it_could_not_judge(tmp_path, capsys):
    a, b = saved_runs(tmp_path, 8.0, repeats=3)
    result = run_in_process(capsys, "compare", a, b, "--fail-on", "tpot:+2%", "--fail-on", "ttft:+5%")
    assert result.returncode == 1
    assert unjudged(result.stderr) == [
        f"llmprof: --fail-on tpot +2.0%: cannot judge {b}: too few repeats (3 < 4)",
        f"llmprof: --fail-on ttft +5.0%: cannot judge {b}: too few repeats (3 < 4)",
    ]
    allowed = run_in_process(capsys, "compare", a, b, "--fail-on", "tpot:+2%", "--allow-unjudged")
    assert allowed.returncode == 0
    assert unjudged(allowed.stderr) == [
        f"llmprof: --fail-on tpot +2.0%: cannot judge {b}: too few repeats (3 < 4) (allowed by --allow-unjudged)"
    ]
    assert run_in_process(capsys, "compare", a, b).returncode == 0  # no gate, nothing to judge


def test_a_real_regression_still_fails_and_a_judged_pass_is_silent(tmp_path, capsys):
    a, b = saved_runs(tmp_path, 8.8, repeats=6)
    for extra in ([], ["--allow-unjudged"]):
        result = run_in_process(capsys, "compare", a, b, "--fail-on", "tpot:+2%", *extra)
        assert result.returncode == 1 and not unjudged(result.stderr)
        assert (
            f"regression past --fail-on {b}: tpot +2.0%: B / A 1.08" in result.stderr
        )  # the forward 10% slower, TPOT 8%
    passed = run_in_process(capsys, "compare", a, b, "--fail-on", "tpot:+20%")
    assert passed.returncode == 0 and passed.stderr == ""


def test_a_threshold_on_a_metric_neither_run_has_cannot_be_judged(tmp_path, capsys):
    a, b = saved_runs(tmp_path, 8.0, repeats=6)
    result = run_in_process(capsys, "compare", a, b, "--fail-on", "vision:+5%")
    assert result.returncode == 1
    assert unjudged(result.stderr) == [
        f"llmprof: --fail-on vision +5.0%: cannot judge {b}: vision is not measured on both sides"
    ]


def sweep_of(runs: dict[int, Run | None]) -> Sweep:
    """A batch-size sweep at prompt 4: a run per batch, or None for a point that failed."""
    points = [
        SweepPoint({"batch_size": batch, "prompt_len": 4}, run=run)
        if run is not None
        else SweepPoint({"batch_size": batch, "prompt_len": 4}, status=FAILED, reason="RuntimeError: boom")
        for batch, run in runs.items()
    ]
    return Sweep({"batch_size": list(runs), "prompt_len": [4]}, {"model": "synthetic"}, points)


def test_a_sweep_gate_names_each_point_it_could_not_judge(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_sweep(
        sweep_of({1: run_of(8, 6, seed=1), 4: run_of(8, 3, seed=2, batch=4), 8: run_of(8, 6, 3, batch=8)}), a
    )
    save_sweep(sweep_of({1: run_of(8, 6, seed=4), 4: run_of(8, 3, seed=5, batch=4), 8: None}), b)
    result = run_in_process(capsys, "compare", str(a), str(b), "--fail-on", "tpot:+2%")
    assert result.returncode == 1
    failed = "failed in B"  # its reason in the point's note
    assert unjudged(result.stderr) == [
        f"llmprof: --fail-on tpot +2.0%: cannot judge {b} at batch_size=4 prompt_len=4: too few repeats (3 < 4)",
        f"llmprof: --fail-on tpot +2.0%: cannot judge {b} at batch_size=8 prompt_len=4: {failed}",
    ]
    allowed = run_in_process(capsys, "compare", str(a), str(b), "--fail-on", "tpot:+2%", "--allow-unjudged")
    assert allowed.returncode == 0 and len(unjudged(allowed.stderr)) == 2
