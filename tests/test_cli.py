"""``python -m llmprof``: the demo, JSON output, every bad input, and Ctrl-C. A case runs in a subprocess where a
fresh process is the point (signals, the import path, the demo as a user starts it), else in-process through
``main([...])``, which is the same code less the interpreter's start."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from run_cli import run_in_process, run_llmprof

from llmprof.runfile import FORMAT_VERSION, load_run

FAST = ["--prompt-len", "16", "--max-new-tokens", "6", "--repeats", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An environment whose demo-model cache is private to this test module (built once, by the first run)."""
    return {**os.environ, "LLMPROF_CACHE": str(tmp_path_factory.mktemp("cache"))}


def llmprof(env, *args):
    return run_llmprof(*args, env=env)


@pytest.fixture
def cli(env, monkeypatch, capsys):
    """``cli(*args)``: ``main(args)`` in this process with ``env``'s demo cache, as a finished process."""
    monkeypatch.setenv("LLMPROF_CACHE", env["LLMPROF_CACHE"])
    return lambda *args: run_in_process(capsys, *args)


@pytest.mark.slow
def test_bare_command_runs_the_demo_and_prints_the_four_metrics(env):
    result = llmprof(env)
    assert result.returncode == 0, result.stderr
    for metric in ("TTFT (ms)", "TPOT (ms)", "latency (E2E) (ms)", "TPS (output) (tok/s)"):
        assert metric in result.stdout
    assert "model demo on cpu" in result.stdout
    # telemetry: the reason GPU telemetry is absent, and the CPU figures instead
    assert "no GPU telemetry: the model runs on the CPU" in result.stdout
    assert "process CPU (100% = one core)" in result.stdout and "process RSS, peak" in result.stdout
    assert "[6/6] repeat done" in result.stderr  # progress during the repeats


def test_json_output_holds_every_raw_timeline(cli, tmp_path):
    path = tmp_path / "run.json"
    result = cli(*FAST, "--batch-size", "2", "--json", str(path))
    assert result.returncode == 0, result.stderr
    run = load_run(path)
    assert len(run.records) == 3 and [r.warmup for r in run.records] == [True, False, False]
    assert run.config["batch_size"] == 2 and run.config["prompt_tokens"] == 16
    assert all(r.batch_size == 2 and r.prompt_tokens == 16 for r in run.records)
    assert len(run.metrics()) == 2
    data = json.loads(path.read_text())
    assert data["format"] == "llmprof-run" and data["version"] == FORMAT_VERSION == 2
    assert "summary" not in data  # every figure is recomputed from the raw timelines, never stored
    assert data["environment"]["versions"]["torch"]
    assert data["environment"]["model"]["parameters"] > 1_000_000 and data["environment"]["model"]["class"]
    assert "error" in data["environment"]["nvml"]  # no NVML here: the probe failed alone
    assert data["telemetry"]["kind"] == "process" and data["telemetry"]["samples"]["cpu_percent"]
    assert all("cpu_time_s" in r["telemetry"] for r in data["requests"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nonexistent/model"], "does not exist"),
        (["--device", "cuda"], "no CUDA GPU"),
        (["--max-new-tokens", "0"], "--max-new-tokens: must be >= 1"),
        (["--max-new-tokens", "-3"], "--max-new-tokens: must be >= 1"),
        (["--prompt-len", "5000"], "exceeds the model's context of 2048"),
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--dtype", "float8"], "invalid choice: 'float8'"),
        (["--json", "/nonexistent/dir/run.json"], "does not exist"),
        (["--prompt", "hi", "--prompt-len", "4"], "not allowed with argument"),
        (["--bogus"], "unrecognized arguments"),
        (
            ["--sample-interval", "0"],
            "--sample-interval: a sampling interval must be between 0.001 and 3600 s",
        ),
        (["--sample-interval", "inf"], "--sample-interval: a sampling interval must be a finite number"),
        (["--device", "mps"], "choose auto, cpu, cuda or cuda:N"),
        (["--seed", "-1"], "--seed: must be between 0"),
        (["--batch-size", "100000"], "needs about"),  # refused before allocating (or the OOM killer)
        (["--prompt-len", "1000000000000"], "exceeds the model's context of 2048"),
        (["--patch", "nomodule:f"], "--patch nomodule:f: cannot import module 'nomodule'"),
    ],
)
def test_bad_input_gives_a_one_line_error(cli, args, message):
    result = cli(*FAST, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmprof: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--debug", "report", "{missing}"], "RunFormatError: {missing}: no such file"),
        (["report", "{missing}", "--debug"], "RunFormatError: {missing}: no such file"),
        (["--debug", "run", "--bogus"], "UsageError: unrecognized arguments: --bogus"),
        (["--debug", "--max-new-tokens", "0"], "UsageError: argument --max-new-tokens: must be >= 1"),
    ],
)
def test_debug_shows_the_traceback_instead_of_the_one_line(args, message, tmp_path, capsys):
    from llmprof.cli import main

    missing = str(tmp_path / "missing.json")
    assert main([a.format(missing=missing) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and message.format(missing=missing) in err
    assert "llmprof: error:" not in err


def test_user_errors_are_llmprof_errors_with_their_exit_status():
    from llmprof import errors

    for kind in (errors.RunFormatError, errors.ModelLoadError, errors.VariantError, errors.PlotUnavailable):
        assert issubclass(kind, errors.UsageError) and kind.exit_code == 2
    assert issubclass(errors.CaptureError, RuntimeError) and errors.CaptureError.exit_code == 1
    assert all(issubclass(k, errors.LlmprofError) for k in (errors.UsageError, errors.TelemetryUnavailable))


def test_a_model_without_generate_is_refused(cli, tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path / "vit")
    result = cli(*FAST, "--model", str(tmp_path / "vit"))
    assert result.returncode == 2 and "has no generate()" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_ctrl_c_sigterm_and_sighup_keep_the_repeats_already_measured(env, tmp_path, sig):
    path = tmp_path / "run.json"
    path.write_text("an older file, replaced only by a run that measured something")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmprof",
            *FAST[:4],
            "--repeats",
            "1000",
            "--warmup",
            "1",
            "--json",
            str(path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if line.startswith("[3/"):  # the warm-up and two repeats are done
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "interrupted after" in err and f"({sig.name})" in err and "TPOT (ms)" in out
    run = load_run(path)
    assert run.interrupted and len(run.measured) >= 2


def test_a_run_that_measured_nothing_leaves_an_existing_file_as_it_was(env, tmp_path):
    path = tmp_path / "run.json"
    path.write_text("a good older run")
    args = [sys.executable, "-m", "llmprof", *FAST[:4], "--warmup", "50", "--json", str(path)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("[1/"):  # the first warm-up call is done: nothing measured yet
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"nothing was measured: {path} is left as it was" in err, err
    assert path.read_text() == "a good older run"


def test_results_are_printed_even_when_the_run_cannot_be_saved(cli):
    result = cli(*FAST, "--json", "/dev/full")  # a device that is always full
    assert result.returncode == 1 and "the run could not be saved to /dev/full" in result.stderr
    assert "TPOT (ms)" in result.stdout and "Traceback" not in result.stderr


@pytest.fixture
def saved(tmp_path):
    from timelines import synthetic_run

    from llmprof.runfile import save_run

    paths = tmp_path / "a.json", tmp_path / "b.json"
    for path, decode in zip(paths, (10.0, 12.0)):
        save_run(synthetic_run(decode), path)
    return paths


@pytest.mark.parametrize(
    "command",
    [
        ["report", "{a}", "--format", "md", "-o", "{a}"],
        ["compare", "{a}", "{b}", "-o", "{b}"],
        ["ab", "--b", "attn=eager", "--json-a", "{c}", "--json-b", "{c}"],
        ["run", "--json", "{c}", "-o", "{c}", "--format", "md"],
    ],
    ids=["report", "compare", "ab", "run"],
)
def test_an_output_onto_an_input_or_another_output_is_refused_before_any_work(cli, saved, command):
    a, b = saved
    before = a.read_text(), b.read_text()
    result = cli(*[part.format(a=a, b=b, c=a.parent / "c.json") for part in command])
    assert result.returncode == 2 and "it would be overwritten; choose another path" in result.stderr
    assert (a.read_text(), b.read_text()) == before and not (a.parent / "c.json").exists()


def test_a_pipe_or_a_device_is_written_as_it_is(env, saved):
    result = llmprof(env, "report", str(saved[0]), "--format", "md", "-o", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("**llmprof**") and "md written to /dev/stdout" in result.stderr


@pytest.mark.parametrize("command", [[], ["run"], ["report"], ["compare"], ["ab"]], ids=str)
def test_help_works_on_every_subcommand_and_there_is_a_version(cli, command):
    result = cli(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: llmprof") and not result.stderr
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"llmprof {llmprof_version()}"


def llmprof_version():
    import llmprof as package

    return package.__version__


def test_a_cache_that_cannot_hold_the_demo_names_llmprof_cache(cli, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LLMPROF_CACHE", str(blocker))
    result = cli(*FAST)
    assert result.returncode == 2 and "set LLMPROF_CACHE to a writable directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_patch_that_exits_is_a_one_line_error(cli, tmp_path, monkeypatch):
    (tmp_path / "llmprof_test_exits.py").write_text("import sys\ndef install(model):\n    sys.exit(3)\n")
    monkeypatch.chdir(tmp_path)
    result = cli(*FAST, "--patch", "llmprof_test_exits:install")
    assert (
        result.returncode == 2 and "--patch llmprof_test_exits:install raised SystemExit: 3" in result.stderr
    )


SHADOW = "raise ImportError('llmprof imported the user folder\\'s {name}.py instead of the package')\n"


def test_files_of_the_current_folder_shadow_no_package(env, tmp_path):
    for name in ("torch", "transformers", "kernels", "numpy"):
        (tmp_path / f"{name}.py").write_text(SHADOW.format(name=name))
    (tmp_path / "llmprof_test_mark.py").write_text(
        "import pathlib\ndef install(model):\n    pathlib.Path('patched').write_text(type(model).__name__)\n"
    )
    result = run_llmprof(*FAST, "--patch", "llmprof_test_mark:install", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # the user's own module still comes from the folder
    assert (tmp_path / "patched").read_text().endswith("ForCausalLM")


def test_a_package_shadowed_on_pythonpath_is_named_in_one_line(env, tmp_path):
    (tmp_path / "transformers.py").write_text("")  # `from transformers import X` then fails
    result = llmprof({**env, "PYTHONPATH": str(tmp_path)}, *FAST)
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert line.startswith(f"llmprof: error: {tmp_path / 'transformers.py'} shadows an installed package"), (
        line
    )


def test_both_ways_a_shadowed_import_fails_name_the_file(tmp_path, monkeypatch):
    import types

    from llmprof.imports import import_failure

    shadow = tmp_path / "json.py"  # the standard library's json, shadowed from a folder on sys.path
    shadow.write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    cannot = ImportError("cannot import name 'dumps' from 'json'", name="json", path=str(shadow))
    assert import_failure(cannot).startswith(
        f"{shadow} shadows an installed package of its name (rename it): "
    )
    monkeypatch.setitem(sys.modules, "json", types.SimpleNamespace(__file__=str(shadow)))
    no_module = ModuleNotFoundError("No module named 'json.x'; 'json' is not a package", name="json.x")
    assert import_failure(no_module).startswith(f"{shadow} shadows an installed package")
    assert import_failure(ImportError("libfoo.so: cannot open")) == (
        "cannot import a library llmprof needs: ImportError: libfoo.so: cannot open"
    )
    import llmprof.analysis.record as submodule  # a submodule named like nothing installed is no shadow, ...

    inner = ImportError("cannot import name 'X'", name=submodule.__name__, path=submodule.__file__)
    assert import_failure(inner).startswith("cannot import a library llmprof needs")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "json.py").write_text("")  # ... nor is one named like an installed package (json)
    nested = ImportError("cannot import name 'X'", name="pkg.json", path=str(tmp_path / "pkg" / "json.py"))
    assert import_failure(nested).startswith("cannot import a library llmprof needs")


def test_a_patch_module_named_like_an_imported_package_is_refused(tmp_path, monkeypatch):
    from llmprof.errors import UsageError
    from llmprof.workloads.variants import load_function

    (tmp_path / "json.py").write_text("def dumps(model):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"--patch json:dumps: .*json.py has the name of the module 'json'"):
        load_function("json:dumps")
    assert str(tmp_path) not in sys.path[: sys.path.index(next(p for p in sys.path if "site-packages" in p))]


def test_a_hub_id_the_hub_cannot_serve_fails_at_once_in_one_line(env):
    # a subprocess: huggingface_hub reads HF_ENDPOINT once, when it is imported
    result = llmprof({**env, "HF_ENDPOINT": "https://hub.invalid"}, *FAST, "--model", "someone/some-model")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()  # no retries, no download noise
    assert "'someone/some-model' is not in the local cache and hub.invalid cannot be reached" in line


def test_a_signal_while_saving_waits_for_the_save():
    import os

    from llmprof.cli import interrupts

    with interrupts.deferred() as caught:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, then SIGTERM, in the middle of a write
        os.kill(os.getpid(), signal.SIGTERM)
        written = "the write went on"
    assert written and caught == [signal.SIGINT, signal.SIGTERM]
    with pytest.raises(KeyboardInterrupt), interrupts.stopping():
        os.kill(os.getpid(), signal.SIGHUP)  # while measuring: stops the repeats as Ctrl-C does


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_run_profiles_a_decode_loop_of_ones_own(cli, tmp_path, monkeypatch):
    path = tmp_path / "loop.json"  # the benchmark's hand-written greedy loop, from its folder
    loop = "bench_loop_vs_generate:greedy"
    monkeypatch.chdir(BENCHMARKS)
    result = cli(*FAST, "--loop", loop, "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "TPOT (ms)" in result.stdout
    run = load_run(path)
    assert [r.warmup for r in run.records] == [True, False, False] and run.config["loop"] == loop
    assert all(r.tokens_per_sequence == [6] for r in run.records)
    bad = cli(*FAST, "--loop", "bench_loop_vs_generate:missing")
    assert bad.returncode == 2 and "module 'bench_loop_vs_generate' has no function 'missing'" in bad.stderr
