"""Nothing measured is lost and nothing kept is clobbered, whatever the loop, the disk or the signals do: the
cases an adversary found (a sweep every point of which is refused, a loop that exits, a full disk, a burst of
Ctrl-C, a depth that cannot be sized)."""

import signal
import subprocess
import sys
import time

import pytest
from run_cli import run_in_process

from llmprof.runfile import load_run
from llmprof.sweepfile import load_sweep
from llmprof.workloads.synthetic import save_synthetic

SENTINEL = "an older sweep, to be replaced only by a sweep that measured something\n"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return save_synthetic(tmp_path_factory.mktemp("models") / "syn", prefill_ms=1.0, decode_ms=1.0)


def test_a_sweep_that_measured_nothing_leaves_an_existing_file_as_it_was(synthetic, tmp_path, capsys):
    path = tmp_path / "sweep.json"
    path.write_text(SENTINEL)
    result = run_in_process(
        capsys, "sweep", "--model", str(synthetic), "--batch-size", "99999999999999999999", "--prompt-len", "4",
        "--max-new-tokens", "2", "--repeats", "1", "--no-telemetry", "--json", str(path),
    )  # fmt: skip
    assert (
        result.returncode == 1
        and f"llmprof: error: nothing was measured (every point refused or failed): {path} is left as it was"
        in result.stderr
    )
    assert path.read_text() == SENTINEL
    assert "refused" in result.stdout  # the table still says why each point was refused


EXITING_LOOP = '''import torch

calls = []


def decode(model, inputs, recorder):
    """A loop that exits the process on its third call."""
    calls.append(1)
    if len(calls) == 3:
        raise SystemExit(0)
    huge(model, inputs, recorder, 1)


def huge(model, inputs, recorder, tokens=2**31):
    """Its steps append ``tokens`` each (2**31 by default: more than a step's count can hold)."""
    ids = inputs["input_ids"]
    with torch.no_grad(), recorder.request(batch=ids.shape[0], prompt_tokens=ids.shape[1]):
        with recorder.prefill():
            model(input_ids=ids)
        recorder.token(tokens=tokens)
        for _ in range(inputs["max_new_tokens"] - 1):
            with recorder.forward():
                model(input_ids=ids)
            recorder.token(tokens=tokens)
'''


@pytest.mark.parametrize("command", ["run", "ab"])
def test_a_loop_that_exits_keeps_and_saves_what_was_measured(
    synthetic, tmp_path, capsys, monkeypatch, command
):
    module = f"llmprof_test_exiting_{command}"  # a fresh module (its own call count) for each case
    (tmp_path / f"{module}.py").write_text(EXITING_LOOP)
    monkeypatch.chdir(tmp_path)
    common = ["--model", str(synthetic), "--prompt-len", "4", "--max-new-tokens", "3", "--repeats", "5"]
    if command == "run":
        args = ["run", *common, "--loop", f"{module}:decode", "--json", "a.json"]
    else:
        args = ["ab", *common, "--b", f"loop={module}:decode", "--json-a", "a.json", "--json-b", "b.json"]
    result = run_in_process(capsys, *args, "--warmup", "1", "--no-telemetry")
    assert result.returncode == 1 and "the loop raised SystemExit(0)" in result.stderr, result.stderr
    runs = [load_run(tmp_path / name) for name in (["a.json"] if command == "run" else ["a.json", "b.json"])]
    # the loop's warm-up and first repeat ran; in ab, A's generate() ran alongside as far as B got
    assert [len(run.measured) for run in runs] == ([1] if command == "run" else [2, 1])
    assert all(run.interrupted for run in runs) and "TPOT" in result.stdout


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_output_that_cannot_be_written_is_shown_when_it_was_the_only_copy(synthetic, capsys, command):
    args = [
        command,
        "--model",
        str(synthetic),
        "--prompt-len",
        "4",
        "--max-new-tokens",
        "3",
        "--repeats",
        "2",
    ]
    result = run_in_process(
        capsys, *args, "--no-telemetry", "--format", "md", "-o", "/dev/full"
    )  # always full
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("llmprof: error: ")
    assert "TPOT" in result.stdout  # no run file kept the results: the table shows them


def test_an_output_that_cannot_be_written_is_not_shown_when_a_run_file_kept_it(synthetic, tmp_path, capsys):
    args = ["run", "--model", str(synthetic), "--prompt-len", "4", "--max-new-tokens", "3", "--repeats", "2"]
    result = run_in_process(capsys, *args, "--json", str(tmp_path / "r.json"), "-o", "/dev/full")
    assert result.returncode == 1 and result.stdout == "" and load_run(tmp_path / "r.json").measured


@pytest.mark.slow  # a fresh process: the point is its signal handling
def test_a_burst_of_ctrl_c_during_a_sweep_keeps_every_point_and_prints_no_traceback(synthetic, tmp_path):
    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1,2,3,4,5,6", "--prompt-len", "4", "--max-new-tokens", "20", "--repeats", "3"]
    command = [sys.executable, "-m", "llmprof", "sweep", "--model", str(synthetic), *args, "--no-telemetry"]
    proc = subprocess.Popen(
        [*command, "--json", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:
        if line.startswith("llmprof: [2/"):  # two points done
            break
    for gap in (0.0, 0.005, 0.01):  # three Ctrl-C within 20 ms
        time.sleep(gap)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "llmprof: interrupted: " in err and "Sweep" in out
    assert len(load_sweep(path).measured()) >= 2


def test_a_depth_the_model_cannot_be_sized_for_is_refused_before_any_allocation(synthetic, capsys):
    # the synthetic model's config gives no size: its inputs alone (64 bytes a position) are over any free memory
    args = ["--model", str(synthetic), "--depth", str(10**10), "--prompt-len", "4", "--max-new-tokens", "2"]
    result = run_in_process(capsys, "sweep", *args, "--repeats", "1", "--no-telemetry")
    assert result.returncode == 1 and "refused" in result.stdout  # it allocated until the OS killed it
    assert "refused, a batch of 1 x (10000000004 + 2) tokens needs about 596.0 GiB" in result.stderr
