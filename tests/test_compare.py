"""Comparisons: the statistics against known distributions, `compare` and `ab` on a synthetic model whose
decode step is 10% slower in B, the --patch errors, and steady-state warm-up."""

import math
import random
import subprocess
import sys

import pytest
from run_cli import run_in_process
from timelines import host_marks, record

import llmprof
from llmprof.analysis.compare import NO_DIFFERENCE, compare_runs, compare_values, setup_differences
from llmprof.capture.recorder import COMPILED
from llmprof.runfile import Run, save_run
from llmprof.workloads.runner import is_steady, warm_up
from llmprof.workloads.synthetic import save_synthetic


def samples(rng, n, scale, sigma=0.02):
    return [scale * rng.lognormvariate(0.0, sigma) for _ in range(n)]


def test_a_ten_percent_slower_b_is_slower_with_a_ci_containing_1_10():
    rng = random.Random(11)
    c = compare_values("tpot", samples(rng, 10, 0.010), samples(rng, 10, 0.011))
    assert c.verdict.endswith("slower") and c.ci_low <= 1.10 <= c.ci_high
    faster = compare_values("tps", samples(rng, 10, 100.0), samples(rng, 10, 120.0))  # higher is better
    assert faster.verdict == f"{faster.ratio:.2f}x faster"


def test_identical_variants_are_no_significant_difference_in_19_of_20_seeded_trials():
    verdicts = []
    for seed in range(20):
        rng = random.Random(seed)
        verdicts.append(
            compare_values("tpot", samples(rng, 10, 0.01), samples(rng, 10, 0.01), seed=seed).verdict
        )
    assert verdicts.count(NO_DIFFERENCE) >= 19


def test_false_positive_rate_and_coverage_over_many_trials():
    false_positives = covered = 0
    trials = 300
    for seed in range(trials):
        rng = random.Random(1000 + seed)
        same = compare_values(
            "tpot", samples(rng, 10, 0.01, 0.05), samples(rng, 10, 0.01, 0.05), resamples=500
        )
        false_positives += same.verdict != NO_DIFFERENCE
        slower = compare_values(
            "tpot", samples(rng, 10, 0.01, 0.05), samples(rng, 10, 0.011, 0.05), resamples=500
        )
        covered += slower.ci_low <= 1.10 <= slower.ci_high
    assert false_positives / trials <= 0.08  # nominal 5%
    assert covered / trials >= 0.88  # nominal 95%


def jittered_run(decode_ms: float, repeats: int = 8, batch: int = 1, seed: int = 0) -> Run:
    """A warm-up and ``repeats`` hand-built requests of 10 tokens whose forwards take ``decode_ms`` with 3%
    run-to-run noise (seeded): a comparison's input with a known answer, no clock involved."""
    rng = random.Random(seed)
    records = [
        record(
            host_marks(10, start=1000.0 * i, prefill=10.0, decode=decode_ms * rng.lognormvariate(0.0, 0.03)),
            [10] * batch,
            prompt=4,
            warmup=i == 0,
        )
        for i in range(repeats + 1)
    ]
    config = {
        "model": "synthetic",
        "dtype": "float32",
        "prompt_tokens": 4,
        "batch_size": batch,
        "device": "cpu",
    }
    return Run(config=config, environment={}, records=records)


def test_compare_cli_on_saved_runs(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    save_run(jittered_run(8.0, seed=1), a)
    save_run(jittered_run(8.8, seed=2), b)
    save_run(jittered_run(8.0, batch=2, seed=3), c)
    result = subprocess.run(
        [sys.executable, "-m", "llmprof", "compare", str(a), str(b), str(c), "--format", "md"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sections = result.stdout.split("#### ")
    tpot = next(line for line in sections[1].splitlines() if line.startswith("| TPOT"))
    forward = next(line for line in sections[1].splitlines() if line.startswith("| decode forward"))
    assert tpot.endswith("slower |")
    low, high = (float(v) for v in forward.split(" | ")[4].split(" - "))
    assert low <= 1.10 <= high  # the forward itself is exactly 10% slower
    assert "warning" not in sections[1]
    assert "- warning: batch size differs: 1 vs 2" in sections[2]


def test_setup_differences_name_what_is_not_under_test():
    a = Run(config={"model": "m", "dtype": "bf16"}, environment={"versions": {"torch": "2.13"}})
    b = Run(config={"model": "m", "dtype": "fp16"}, environment={"versions": {"torch": "2.14"}})
    assert setup_differences(a, b) == [
        "dtype differs: 'bf16' vs 'fp16'",
        "torch version differs: '2.13' vs '2.14'",
    ]
    assert setup_differences(a, b, variables=["dtype"]) == ["torch version differs: '2.13' vs '2.14'"]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "synthetic"
    save_synthetic(path, prefill_ms=10.0, decode_ms=8.0, jitter=0.03)  # realistic run-to-run noise
    (path.parent / "llmprof_test_kernels.py").write_text(
        "def slower(model):\n    model.config.decode_ms *= 1.1\n"
        "    with open(__file__ + '.log', 'a') as log:\n        log.write(f'{model.config.decode_ms}\\n')\n\n"
        "def broken(model):\n    raise RuntimeError('no such kernel')\n"
    )
    return path


@pytest.fixture
def llmprof_cli(capsys, monkeypatch):
    """``llmprof_cli(*args, cwd=DIR)``: the CLI in this process, run from ``DIR`` (where the patches are)."""

    def call(*args, cwd):
        monkeypatch.chdir(cwd)
        return run_in_process(capsys, *args)

    return call


def test_ab_interleaves_and_finds_the_slower_patch(llmprof_cli, synthetic_dir, tmp_path):
    result = llmprof_cli(
        "ab",
        "--model",
        str(synthetic_dir),
        "--b",
        "patch=llmprof_test_kernels:slower",
        "--repeats",
        "6",
        "--prompt-len",
        "4",
        "--max-new-tokens",
        "10",
        "--no-telemetry",
        "--format",
        "md",
        "--json-a",
        str(tmp_path / "a.json"),
        "--json-b",
        str(tmp_path / "b.json"),
        cwd=synthetic_dir.parent,
    )
    assert result.returncode == 0, result.stderr
    tpot = next(line for line in result.stdout.splitlines() if line.startswith("| TPOT"))
    forward = next(line for line in result.stdout.splitlines() if line.startswith("| decode forward"))
    # B's forwards are A's (the same seeded noise, copied with the model) made 10% slower: the forward
    # verdict holds on a busy machine; TPOT adds the loop's own, unscaled and noisier, host time
    assert forward.endswith("slower |") and float(tpot.split(" | ")[3]) > 1.0
    low, high = (float(v) for v in forward.split(" | ")[4].split(" - "))
    assert low <= 1.10 <= high
    # A and B alternated: their calls interleave in time
    a, b = (llmprof.runfile.load_run(tmp_path / f"{x}.json") for x in "ab")
    starts = sorted([(r.host_ns[0], "A") for r in a.measured] + [(r.host_ns[0], "B") for r in b.measured])
    assert "".join(name for _, name in starts) == "AB" * 6
    assert b.config["variant"]["patch"] == "llmprof_test_kernels:slower"


@pytest.mark.parametrize(
    "patch, message",
    [
        ("nomodule:f", "cannot import module 'nomodule'"),
        ("llmprof_test_kernels:missing", "module 'llmprof_test_kernels' has no function 'missing'"),
        ("llmprof_test_kernels:broken", "raised RuntimeError: no such kernel"),
        ("llmprof_test_kernels", "expected module:function"),
    ],
)
def test_patch_errors_are_one_line(llmprof_cli, synthetic_dir, patch, message):
    result = llmprof_cli(
        "run",
        "--model",
        str(synthetic_dir),
        "--patch",
        patch,
        "--repeats",
        "1",
        "--prompt-len",
        "4",
        "--max-new-tokens",
        "2",
        cwd=synthetic_dir.parent,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_patch_is_applied_once_and_recorded(llmprof_cli, synthetic_dir, tmp_path):
    log = synthetic_dir.parent / "llmprof_test_kernels.py.log"  # the patch logs the decode time it set
    before = log.read_text().splitlines() if log.exists() else []
    result = llmprof_cli(
        "run",
        "--model",
        str(synthetic_dir),
        "--patch",
        "llmprof_test_kernels:slower",
        "--repeats",
        "2",
        "--prompt-len",
        "4",
        "--max-new-tokens",
        "4",
        "--json",
        str(tmp_path / "r.json"),
        cwd=synthetic_dir.parent,
    )
    assert result.returncode == 0, result.stderr
    run = llmprof.runfile.load_run(tmp_path / "r.json")
    assert run.config["patch"] == "llmprof_test_kernels:slower"
    applied = log.read_text().splitlines()[len(before) :] if log.exists() else []
    assert applied == [str(8.0 * 1.1)]  # the patch ran once, on the loaded model


def test_bad_variant_is_a_one_line_error(llmprof_cli, synthetic_dir):
    result = llmprof_cli("ab", "--model", str(synthetic_dir), "--b", "speed=fast", cwd=synthetic_dir.parent)
    assert (
        result.returncode == 2
        and "is not KEY=VALUE with KEY in attn, compile, dtype, patch, loop" in result.stderr
    )


def timed(ms):
    return record(host_marks(1, start=0.0, prefill=ms), [1])


def test_steady_state_warm_up_stops_when_three_calls_agree():
    latencies = iter([300.0, 120.0, 60.0, 50.0, 50.5, 49.8, 50.1])
    calls = list(warm_up(lambda: timed(next(latencies)), None))
    assert len(calls) == 6 and is_steady(calls)
    alternating = iter([10.0, 100.0] * 10)
    never = list(warm_up(lambda: timed(next(alternating)), None, max_calls=7))
    assert len(never) == 7
    assert len(list(warm_up(lambda: timed(10.0), 2))) == 2  # a fixed count is a fixed count
    compiled = [timed(10.0) for _ in range(6)]
    compiled[1].warnings.append(COMPILED)  # the same time, but that call compiled a new graph
    latest = iter(compiled)
    assert len(list(warm_up(lambda: next(latest), None))) == 2 + 3  # three calls after the compiling one


def test_an_ab_whose_variants_set_the_same_is_called_an_a_a_run():
    from llmprof.cli.ab import same_variant

    def run(**settings):
        base = {
            "dtype": "float32",
            "attn_implementation": "sdpa",
            "compile": False,
            "patch": None,
            "loop": None,
        }
        return Run(config={**base, **settings}, environment={})

    assert same_variant([run(), run(attn_implementation="eager")]) == ""
    assert same_variant([run(), run()]) == (  # e.g. --b attn=sdpa on a model loaded with sdpa
        "A and B are the same variant (dtype=float32, attn_implementation=sdpa): an A/A run, its differences "
        "are noise"
    )


def test_a_part_only_generate_has_gets_no_verdict_against_a_loop():
    from llmprof.analysis.compare import LOOP_VS_GENERATE

    generate, loop = jittered_run(8.0, seed=1), jittered_run(8.0, seed=2)
    loop.config["loop"] = "mine:decode"
    verdicts = {c.metric: c for c in compare_runs(generate, loop)}
    assert verdicts["host_prep"].verdict == LOOP_VS_GENERATE and math.isnan(verdicts["host_prep"].ci_low)
    assert verdicts["tpot"].verdict != LOOP_VS_GENERATE  # the parts both have are compared as always
    assert {c.metric: c.verdict for c in compare_runs(generate, jittered_run(8.0, seed=2))}["host_prep"] != (
        LOOP_VS_GENERATE
    )


def test_a_comparison_shows_each_runs_warnings_as_its_own_report_does(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_run(jittered_run(8.0, seed=1), a)
    compiled = jittered_run(8.0, seed=2)
    for raw in compiled.records:
        raw.warnings = [COMPILED]
    save_run(compiled, b)
    out = run_in_process(capsys, "compare", str(a), str(b), "--format", "md").stdout
    warnings = [line for line in out.splitlines() if line.startswith("- warning")]
    assert warnings == [f"- warning: B: {COMPILED} (8 requests)"]  # A warns of nothing
