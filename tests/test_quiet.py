"""What a new user meets on a fresh machine. llmprof's stderr is its own: no progress bar of transformers'
(building, saving or loading a model) and no Kineto line of torch.profiler's, and transformers' own setting is
left as the user had it. A model folder without a tokenizer takes a synthetic prompt; --prompt TEXT is one
line saying the folder has no tokenizer."""

import os
import subprocess
import sys

import pytest
from run_cli import run_in_process, run_llmprof
from tiny_models import tiny_llama

from llmprof.runfile import load_run

LLMPROF_LINES = ("[", "llmprof:", "peaks measured on ", "run saved to ")  # progress, messages, peaks, --json


def foreign_lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if not line.startswith(LLMPROF_LINES)]


@pytest.mark.slow  # the demo built, loaded and profiled in a fresh process
def test_a_first_run_with_kernels_prints_only_llmprofs_lines(tmp_path):
    """A fresh cache: the demo is built and saved, loaded, then profiled once more under torch.profiler."""
    env = {**os.environ, "LLMPROF_CACHE": str(tmp_path / "cache")}
    args = ["run", "--kernels", "4", "--prompt-len", "8", "--max-new-tokens", "4", "--repeats", "1"]
    result = run_llmprof(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "one more call under torch.profiler" in result.stderr and "prefill" in result.stdout
    assert foreign_lines(result.stderr) == []


def test_saving_a_synthetic_model_prints_nothing(tmp_path):
    code = "from llmprof.workloads.synthetic import save_synthetic; import sys; save_synthetic(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stderr == ""


def test_transformers_progress_bars_are_off_only_while_llmprof_saves_or_loads(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    from llmprof.workloads.models import load_model
    from llmprof.workloads.synthetic import save_synthetic

    hf_logging.enable_progress_bar()
    save_synthetic(tmp_path / "s", prefill_ms=0, decode_ms=0)
    assert hf_logging.is_progress_bar_enabled()
    load_model(str(tmp_path / "s"), "cpu")
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    load_model(str(tmp_path / "s"), "cpu")
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    assert capfd.readouterr().err == ""


def test_a_model_folder_without_a_tokenizer_takes_a_synthetic_prompt(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMPROF_CACHE", str(tmp_path / "cache"))
    folder, path = tmp_path / "model", tmp_path / "run.json"
    tiny_llama().save_pretrained(folder)  # config, generation config and weights: no tokenizer file
    fast = ["--max-new-tokens", "3", "--repeats", "1", "--warmup", "0", "--ignore-eos", "--no-telemetry"]
    result = run_in_process(
        capsys, "run", "--model", str(folder), "--prompt-len", "8", *fast, "--json", str(path)
    )
    assert result.returncode == 0, result.stderr
    run = load_run(path)
    assert run.config["prompt_tokens"] == 8 and [r.tokens_per_sequence for r in run.records] == [[3]]
    assert foreign_lines(result.stderr) == []

    result = run_in_process(capsys, "run", "--model", str(folder), "--prompt", "hi", *fast)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("llmprof: error: --prompt") and "has no tokenizer" in result.stderr
