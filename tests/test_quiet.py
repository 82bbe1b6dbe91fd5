"""llmprof's stderr is its own: no progress bar of transformers' (building, saving or loading a model) and no
Kineto line of torch.profiler's, and transformers' own setting is left as the user had it."""

import os
import subprocess
import sys

from run_cli import run_llmprof

LLMPROF_LINES = ("[", "llmprof:", "peaks measured on ")  # progress, messages, the roofline's measurement


def foreign_lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if not line.startswith(LLMPROF_LINES)]


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
