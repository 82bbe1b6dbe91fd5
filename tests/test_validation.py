"""Issue 27: files validated whole. A sweep point's axis values against its own run (config and requests), no
point twice, axis values of their type and range; a run's config against what its requests show. Each bad
file is one line naming the point or the field and both values; every file llmprof writes still loads."""

import json
import re
from pathlib import Path

import pytest
from run_cli import run_in_process
from timelines import synthetic_run

from llmprof.analysis.record import RawRequest
from llmprof.analysis.roofline import above_peak, verdict
from llmprof.errors import RunFormatError
from llmprof.runfile import Run, dump_run, load_run
from llmprof.sweepfile import load_sweep
from llmprof.workloads.synthetic import save_synthetic

SWEEP = ["--batch-size", "1,2", "--prompt-len", "4", "--depth", "0,3", "--max-new-tokens", "3"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "synthetic"
    save_synthetic(path, prefill_ms=1.0, decode_ms=1.0)
    return path


def sweep_args(model):
    return [
        "sweep",
        "--model",
        str(model),
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--no-telemetry",
        "--ignore-eos",
    ]


@pytest.fixture(scope="module")
def sweep_text(model, tmp_path_factory):
    """A sweep file as `sweep` writes it: batch 1 and 2, prompt 4, depth 0 and 3, 3 new tokens."""
    from llmprof.cli import main  # run_in_process needs capsys, which a module fixture has not

    path = tmp_path_factory.mktemp("sweeps") / "sweep.json"
    assert main([*sweep_args(model), *SWEEP, "--json", str(path)]) == 0
    return path.read_text()


def edited(tmp_path, text: str, change) -> str:
    data = json.loads(text)
    change(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return str(path)


def point(data: dict, batch: int, depth: int) -> dict:
    return next(
        p for p in data["points"] if p["params"]["batch_size"] == batch and p["params"]["depth"] == depth
    )


def relabel(data: dict, batch: int, depth: int, axis: str, value, config_key: str | None = None) -> None:
    """The point (batch, depth) claims ``axis=value``; ``config_key``: its run's config and sweep_point too
    (an adversary who edits all three); the axis lists the value."""
    entry = point(data, batch, depth)
    if value not in data["axes"][axis]:
        data["axes"][axis].append(value)
    entry["params"][axis] = value
    if config_key is not None:
        entry["run"]["config"][config_key] = value
        entry["run"]["config"]["sweep_point"][axis] = value


def test_the_sweep_file_loads_with_its_depth_and_batches(sweep_text, tmp_path):
    """What `sweep` writes passes every check (the depth's cached tokens included)."""
    path = tmp_path / "sweep.json"
    path.write_text(sweep_text)
    sweep = load_sweep(path)
    assert len(sweep.measured()) == 4
    assert {r.cached_tokens for p in sweep.points for r in p.run.records} == {0, 3}


@pytest.mark.parametrize(
    "change, message",
    [
        (  # issue 27: a batch-1 run listed as batch 4
            lambda d: relabel(d, 1, 0, "batch_size", 4),
            (
                "points[0] (batch_size=4 prompt_len=4 depth=0 max_new_tokens=3): params differ from its run's"
                " config.sweep_point"
            ),
        ),
        (
            lambda d: (relabel(d, 1, 0, "batch_size", 4), point(d, 4, 0)["run"]["config"].pop("sweep_point")),
            (
                "points[0] (batch_size=4 prompt_len=4 depth=0 max_new_tokens=3): params.batch_size: 4, but its run's"
                " config.batch_size is 1"
            ),
        ),
        (  # config and sweep_point edited too: the run's own requests say batch 1
            lambda d: relabel(d, 1, 0, "batch_size", 4, "batch_size"),
            "points[0].run: malformed llmprof run: config.batch_size: 4, but requests[0] has batch 1",
        ),
        (  # no config to compare with: the params against the requests themselves
            lambda d: (
                relabel(d, 1, 0, "batch_size", 4),
                [point(d, 4, 0)["run"]["config"].pop(k) for k in ("sweep_point", "batch_size")],
            ),
            (
                "points[0] (batch_size=4 prompt_len=4 depth=0 max_new_tokens=3): params.batch_size: 4, but"
                " requests[0] has batch 1"
            ),
        ),
        (
            lambda d: relabel(d, 2, 3, "prompt_len", 8, "prompt_tokens"),
            "config.prompt_tokens: 8, but requests[0] has 4 prompt tokens (less the cached ones)",
        ),
        (
            lambda d: relabel(d, 2, 0, "depth", 5, "depth"),
            "config.depth: 5, but requests[0] has 0 cached tokens",
        ),
        (
            lambda d: relabel(d, 1, 3, "max_new_tokens", 2, "max_new_tokens"),
            "config.max_new_tokens: 2, but requests[0] has 3 tokens in a sequence",
        ),
        (  # a point listed twice would count twice
            lambda d: d["points"].append(d["points"][1]),
            "points[4] (batch_size=1 prompt_len=4 depth=3 max_new_tokens=3): the same point as points[1]",
        ),
        (
            lambda d: (relabel(d, 1, 0, "batch_size", -4), d["axes"]["batch_size"].remove(-4)),
            "points[0].params.batch_size: an integer of at least 1 is needed, not -4",
        ),
        (
            lambda d: d["axes"]["batch_size"].append(-4),
            "axes.batch_size: an integer of at least 1 is needed, not -4",
        ),
        (lambda d: d["axes"]["depth"].append("3"), "axes.depth: an integer of at least 0 is needed, not '3'"),
        (lambda d: d["axes"]["depth"].append(3), "axes.depth: a value is listed twice"),
        (
            lambda d: point(d, 2, 3)["params"].update(batch_size=8),
            (
                "points[3] (batch_size=8 prompt_len=4 depth=3 max_new_tokens=3): params.batch_size: 8 is not a value"
                " of its axis"
            ),
        ),
    ],
    ids=[
        "batch-relabelled",
        "batch-vs-config",
        "batch-config-too",
        "batch-vs-requests",
        "prompt",
        "depth",
        "max-new-tokens",
        "duplicate",
        "negative-batch",
        "negative-axis",
        "axis-type",
        "axis-twice",
        "not-on-axis",
    ],
)
def test_a_sweep_point_that_contradicts_its_run_or_the_axes_is_one_line(
    sweep_text, tmp_path, capsys, change, message
):
    path = edited(tmp_path, sweep_text, change)
    with pytest.raises(RunFormatError) as error:
        load_sweep(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    result = run_in_process(capsys, "report", path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


def test_resume_refuses_a_file_whose_point_is_not_what_it_measured(model, sweep_text, tmp_path, capsys):
    """Issue 27: a batch-1 run relabelled batch 4 was skipped by --resume as if batch 4 had been measured."""
    path = edited(tmp_path, sweep_text, lambda d: relabel(d, 1, 0, "batch_size", 4))
    before = Path(path).read_text()
    result = run_in_process(capsys, *sweep_args(model), *SWEEP[:1], "1,2,4", *SWEEP[2:], "--resume", path)
    assert result.returncode == 2 and "params differ from its run's config.sweep_point" in result.stderr
    assert Path(path).read_text() == before


def config_run(**config) -> Run:
    run = synthetic_run(1.0)  # 3 requests: batch 1, 10 prompt tokens, 6 tokens each
    run.config = {"model": "synthetic", **config}
    return run


def load_text(tmp_path, run: Run) -> Run:
    path = tmp_path / "run.json"
    path.write_text(dump_run(run))
    return load_run(path)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"batch_size": 64}, "config.batch_size: 64, but requests[0] has batch 1"),
        ({"prompt_tokens": 12}, "config.prompt_tokens: 12, but requests[0] has 10 prompt tokens"),
        ({"max_new_tokens": 4}, "config.max_new_tokens: 4, but requests[0] has 6 tokens in a sequence"),
        ({"depth": 2}, "config.depth: 2, but requests[0] has 0 cached tokens"),
        ({"batch_size": 0}, "config.batch_size: 0 is out of range"),
        ({"batch_size": "4"}, "config.batch_size: an integer is needed, not str '4'"),
    ],
    ids=["batch", "prompt", "max-new-tokens", "depth", "zero-batch", "batch-type"],
)
def test_a_config_that_contradicts_the_requests_is_a_load_error_naming_both(
    tmp_path, capsys, config, message
):
    run = config_run(batch_size=1, prompt_tokens=10, max_new_tokens=6)
    run.config.update(config)
    path = tmp_path / "run.json"
    path.write_text(dump_run(run))
    result = run_in_process(capsys, "report", str(path))
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_configs_that_agree_or_say_nothing_still_load(tmp_path):
    """The config llmprof writes, a partial one (Recorder.save), a decode loop of one's own (its requests are
    its own), continuous batching (each request its own batch and prompt), a depth, and no config at all."""
    load_text(tmp_path, config_run(batch_size=1, prompt_tokens=10, max_new_tokens=6, depth=0))
    load_text(tmp_path, config_run(device="cpu"))
    load_text(tmp_path, config_run(batch_size=4, prompt_tokens=3, max_new_tokens=2, loop="mine:decode"))
    batched = config_run(batch_size=4, prompt_tokens=3, max_new_tokens=6)
    for raw in batched.records:
        raw.warnings.append(
            "continuous batching: the request's token times are transformers' own host stamps"
        )
    load_text(tmp_path, batched)
    deep = config_run(batch_size=1, prompt_tokens=4, depth=6, max_new_tokens=6)
    for raw in deep.records:
        raw.cached_tokens = 6
    assert [r.cached_tokens for r in load_text(tmp_path, deep).records] == [6, 6, 6]
    assert isinstance(load_text(tmp_path, config_run()).records[0], RawRequest)


def peaked_report(tmp_path, capsys, **peaks) -> str:
    """The Markdown report of a run whose decode is at 50% of 10 GB/s, its prefill at 25% and decode at 10% of
    1 TFLOP/s, against ``peaks`` instead."""
    run = synthetic_run(10.0, kv=False)
    run.roofline["peaks"].update(peaks)
    path = tmp_path / "run.json"
    path.write_text(dump_run(run))
    result = run_in_process(capsys, "report", str(path), "--format", "md")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mbu_over_100_percent_says_the_peak_bandwidth_must_be_too_low(tmp_path, capsys):
    """Issue 27: a peak bandwidth too low gave "bound: memory bandwidth ... at 155% of the peak"."""
    out = peaked_report(tmp_path, capsys, bandwidth=1e9)
    assert "| MBU, decode (token to token) (%) | 500.0 |" in out  # the figure, as measured against the peak
    assert (
        "- bound: not judged. MBU 500% is above the peak: the peak bandwidth (1 GB/s, override) must be too low;"
        " the roofline's floors and shares above are wrong with it" in out
    )
    assert "bound: memory bandwidth" not in out and "MFU" not in out.split("bound: not judged")[1]
    assert "bound: neither bandwidth nor compute" in peaked_report(tmp_path, capsys)  # at 50%: judged


def test_mfu_over_100_percent_says_the_peak_flops_must_be_too_low(tmp_path, capsys):
    out = peaked_report(tmp_path, capsys, flops=1e11, flops_source="table: test card")
    assert (
        "- bound: not judged. MFU 250% is above the peak: the peak FLOP/s (100 GFLOP/s, table: test card) must be"
        " too low;" in out
    )


def test_one_decode_step_above_the_peak_is_flagged_too():
    """A request at 80% whose best step is at 120%: that step cannot be, so neither can the peak."""
    analysis = synthetic_run(10.0, kv=False).roofline_analyses()[0]
    analysis.step_mbu[-1] = 1.2
    assert verdict([analysis]).startswith(
        "bound: not judged. MBU 120% is above the peak: the peak bandwidth (10"
    )
    analysis.peaks = None
    assert above_peak([analysis]) == "MBU 120% is above the peak: the peak bandwidth must be too low"
    analysis.step_mbu[-1] = 1.005  # within the clock's resolution of the peak: possible
    assert above_peak([analysis]) is None


def test_run_with_a_peak_bandwidth_far_too_low_flags_its_mbu(tmp_path, capsys):
    """The issue's command: `run --peak-bandwidth` far below what the model moved (1 B/s: no step of a real
    model is that slow), on a tiny Llama on the CPU."""
    from tiny_models import tiny_llama

    tiny_llama().save_pretrained(tmp_path / "llama")
    result = run_in_process(
        capsys, "run", "--model", str(tmp_path / "llama"), "--repeats", "1", "--warmup", "0",
        "--max-new-tokens", "3", "--no-telemetry", "--peak-bandwidth", "1B/s", "--peak-flops", "1e24",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"bound: not judged\. MBU \d+% is above the peak: the peak bandwidth \(1 B/s, override\) must be too low",
        " ".join(result.stdout.split()),
    ), result.stdout
