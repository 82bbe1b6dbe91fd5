"""Sweeps: the grid syntax, a 2 x 2 x 2 sweep of the synthetic model against its programmed truth, a failing
point recorded while the others complete (and the larger batches after an out-of-memory error skipped),
--resume measuring only what is missing, the sweep file and its report."""

import csv
import io
import json
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from run_cli import run_in_process
from timelines import host_marks, record, synthetic_run
from tiny_models import tiny_llama

from llmprof.analysis import registry
from llmprof.analysis.grid import parse_values, point_key, points
from llmprof.capture.model_shape import model_shape
from llmprof.capture.recorder import COMPILED
from llmprof.cli import main
from llmprof.errors import CaptureError, RunFormatError, UsageError
from llmprof.report import render
from llmprof.report.sweep import render as render_sweep
from llmprof.report.sweep import render_table
from llmprof.runfile import Run
from llmprof.sweepfile import FAILED, OK, REFUSED, SKIPPED, Sweep, SweepPoint, load_sweep, save_sweep
from llmprof.workloads.runner import depth_cache
from llmprof.workloads.synthetic import SyntheticConfig, decode_step_ms, save_synthetic


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1,4,16", [1, 4, 16]),
        ("1-64*2", [1, 2, 4, 8, 16, 32, 64]),
        ("128-512+128", [128, 256, 384, 512]),
        ("3-5", [3, 4, 5]),
        ("4,1-3,4", [4, 1, 2, 3]),
        ("1-10*3", [1, 3, 9]),
    ],
)
def test_axis_values_are_lists_and_ranges(text, values):
    assert parse_values(text, "--batch-size") == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,1", "0 is below 1"),
        ("four", "'four' is not a number or a range"),
        ("8-2", "runs backwards"),
        ("1-8*1", "never advances"),
        ("1-5000", "more than 1000 values"),
        ("1,,2", "'' is not a number"),
    ],
)
def test_bad_axis_values_are_one_line_errors_naming_the_option(text, message):
    with pytest.raises(UsageError, match="--prompt-len") as error:
        parse_values(text, "--prompt-len")
    assert message in str(error.value)


def test_points_are_the_product_with_the_last_axis_fastest():
    grid = points({"batch_size": [1, 2], "prompt_len": [4, 8]})
    assert grid == [
        {"batch_size": 1, "prompt_len": 4},
        {"batch_size": 1, "prompt_len": 8},
        {"batch_size": 2, "prompt_len": 4},
        {"batch_size": 2, "prompt_len": 8},
    ]
    assert point_key({"prompt_len": 8, "batch_size": 2}) == point_key(grid[3])


@pytest.fixture(scope="module")
def scaling_model(tmp_path_factory):
    """Decode costs 3 ms + 2 ms per sequence + 40 ms per 1k tokens of context (summed over the batch)."""
    path = tmp_path_factory.mktemp("models") / "scaling"
    save_synthetic(path, prefill_ms=2.0, decode_ms=3.0, row_ms=2.0, kv_ms_per_1k=40.0)
    return path


def sweep_args(model, *extra):
    return [
        "sweep",
        "--model",
        str(model),
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--no-telemetry",
        "--ignore-eos",
        *extra,
    ]


def test_a_2x2x2_sweep_matches_the_synthetic_truth_at_every_point(
    scaling_model, tmp_path, capsys, monkeypatch
):
    from llmprof.workloads import models

    loaded = []
    load = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loaded.append(load(*a, **k)) or loaded[-1])
    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1,3", "--prompt-len", "16,64", "--max-new-tokens", "4,8", "--json", str(path)]
    assert main(sweep_args(scaling_model, *args)) == 0
    sweep = load_sweep(path)
    assert [p.key for p in sweep.points] == [
        point_key({"batch_size": b, "prompt_len": p, "max_new_tokens": g})
        for b in (1, 3)
        for p in (16, 64)
        for g in (4, 8)
    ]
    config = SyntheticConfig.from_pretrained(scaling_model)
    log = loaded[0].model.forward_log  # the model's own (start, end, generated) of every forward: same calls
    for point in sweep.points:
        assert point.status == OK
        batch, prompt, gen = (point.params[k] for k in ("batch_size", "prompt_len", "max_new_tokens"))
        run = point.run
        assert run.config["batch_size"] == batch and run.config["prompt_tokens"] == prompt
        metrics = run.metrics()
        assert len(metrics) == 2 and all(m.output_tokens == [gen] * batch for m in metrics)
        # the forward producing token k reads a context of prompt + k - 1 tokens, and waits out its cost
        truth = (
            statistics.fmean(decode_step_ms(config, batch, prompt + k - 1) for k in range(2, gen + 1)) / 1e3
        )
        for raw, m in zip([r for r in run.records if not r.warmup], metrics):
            start, end = raw.window
            own = [(e - s) / 1e9 for s, e, generated in log if start <= s <= end and generated > 0]
            assert len(own) == gen - 1  # one decode forward per token after the first
            # programmed <= the model's own forward <= the marked span <= the step (ground truth, same call)
            assert truth <= statistics.fmean(own) <= m.breakdown.decode_forward <= m.tpot
    err = capsys.readouterr().err
    assert "sweep of 8 points (0 already measured)" in err and "[8/8]" in err


def test_a_failing_point_is_recorded_and_larger_batches_skipped_while_the_rest_complete(tmp_path, capsys):
    model = save_synthetic(tmp_path / "oom", prefill_ms=1.0, decode_ms=1.0, oom_at_batch=2)
    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1,2,4", "--prompt-len", "4,8", "--max-new-tokens", "3", "--json", str(path)]
    assert main(sweep_args(model, *args)) == 0
    by_batch = {}
    for point in load_sweep(path).points:
        by_batch.setdefault(point.params["batch_size"], []).append(point)
    assert [p.status for p in by_batch[1]] == [OK, OK]
    assert [p.status for p in by_batch[2]] == [FAILED, FAILED]
    assert all("out of memory" in p.reason and p.run is None for p in by_batch[2])
    assert [p.status for p in by_batch[4]] == [SKIPPED, SKIPPED]
    assert all(p.reason == "batch 2 ran out of memory at the same prompt and generation" for p in by_batch[4])
    table = capsys.readouterr().out
    assert "2 of 6 points measured" in table and "skipped" in table


def test_resume_measures_only_the_points_missing(scaling_model, tmp_path, capsys):
    path = tmp_path / "sweep.json"
    common = ["--prompt-len", "8", "--max-new-tokens", "3"]
    assert main(sweep_args(scaling_model, "--batch-size", "1,2", *common, "--json", str(path))) == 0
    before = json.loads(path.read_text())
    capsys.readouterr()
    assert main(sweep_args(scaling_model, "--batch-size", "1-4*2", *common, "--resume", str(path))) == 0
    assert "sweep of 1 points (2 already measured)" in capsys.readouterr().err
    after = json.loads(path.read_text())
    assert after["points"][:2] == before["points"]  # the measured points untouched
    assert [p["params"]["batch_size"] for p in after["points"]] == [1, 2, 4]
    assert after["axes"]["batch_size"] == [1, 2, 4]
    # another workload is not this sweep's continuation
    assert (
        main(sweep_args(scaling_model, "--batch-size", "1", *common, "--seed", "3", "--resume", str(path)))
        == 2
    )
    assert "seed 0 vs 3" in capsys.readouterr().err


def test_report_renders_a_sweep_one_row_per_point(scaling_model, tmp_path, capsys):
    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1,2", "--prompt-len", "8", "--max-new-tokens", "3", "--json", str(path)]
    assert main(sweep_args(scaling_model, *args)) == 0
    capsys.readouterr()
    assert main(["report", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["batch_size"], r["prompt_len"], r["max_new_tokens"], r["status"]) for r in rows] == [
        ("1", "8", "3", "ok"),
        ("2", "8", "3", "ok"),
    ]
    sweep = load_sweep(path)
    for row, point in zip(rows, sweep.points):
        assert float(row["tpot_s"]) == round(statistics.median(m.tpot for m in point.run.metrics()), 9)
        summaries = registry.summaries(point.run.metrics())  # the medians, without the bootstrap
        assert registry.medians(point.run.metrics()) == {name: s.median for name, s in summaries.items()}
    assert main(["report", str(path), "--format", "md"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[2].startswith("| batch | prompt | gen | status | TTFT (ms) | TPOT (ms)") and len(md) == 6
    assert main(["report", str(path), "--format", "json"]) == 0
    assert Sweep.from_dict(json.loads(capsys.readouterr().out)).to_dict() == sweep.to_dict()
    assert main(["report", str(path), "--format", "trace", "-o", str(tmp_path / "t.json")]) == 2
    assert "a sweep renders as table, md, csv, json" in capsys.readouterr().err
    assert (
        main(
            [
                "report",
                str(path),
                "--format",
                "trace",
                "-o",
                str(tmp_path / "t.json"),
                "--point",
                "batch_size=2",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_the_sweep_csv_names_its_columns_with_their_units_as_the_run_csv_does():
    run = synthetic_run(10.0)  # with a roofline: every metric has a value
    sweep = Sweep({"batch_size": [1, 2]}, points=[SweepPoint({"batch_size": 1}, run=run)])
    sweep.points.append(SweepPoint({"batch_size": 2}, REFUSED, "too big"))
    header, measured, refused = csv.reader(io.StringIO(render_sweep(sweep, "csv")))
    columns = [
        "ttft_s",
        "tpot_s",
        "itl_p99_s",
        "tps_tok_per_s",
        "decode_tps_tok_per_s",
        "mbu_ratio",
        "floor_tpot_s",
    ]
    assert header == ["batch_size", "status", *columns, "note"]
    assert set(columns) <= set(next(csv.DictReader(io.StringIO(render(run, "csv")))))  # the run CSV's names
    # the medians rounded to 1e-9 (63.1578947368421 tok/s, a floor of 0.0050013312 s), as the run CSV writes them
    assert measured == [
        "1",
        "ok",
        "0.042",
        "0.01",
        "0.01",
        "63.157894737",
        "100.0",
        "0.50013312",
        "0.005001331",
        "",
    ]
    assert refused == ["2", "refused", *[""] * len(columns), "too big"]


def test_each_point_keeps_the_telemetry_of_its_own_window_and_renders_alone(scaling_model, tmp_path, capsys):
    path = tmp_path / "sweep.json"
    args = ["sweep", "--model", str(scaling_model), "--repeats", "2", "--warmup", "1", "--ignore-eos"]
    args += [
        "--sample-interval",
        "0.002",
        "--batch-size",
        "1,2",
        "--prompt-len",
        "8",
        "--max-new-tokens",
        "6",
    ]
    assert main([*args, "--json", str(path)]) == 0
    points = load_sweep(path).points
    windows = [
        (min(r.window[0] for r in p.run.records), max(r.window[1] for r in p.run.records)) for p in points
    ]
    times = [p.run.telemetry["samples"]["t_ns"] for p in points]
    assert all(p.run.telemetry["kind"] == "process" for p in points) and sum(map(len, times)) > 0
    # a point's samples lie between the end of the point before and the start of the point after
    assert all(t < windows[1][0] for t in times[0]) and all(t > windows[0][1] for t in times[1])
    capsys.readouterr()
    assert main(["report", str(path), "--point", "batch_size=2"]) == 0
    out = capsys.readouterr().out
    assert "batch 2 | prompt 8 tok" in out and "Telemetry (per request, process sampler" in out
    assert main(["report", str(path), "--point", "batch_size=1 prompt_len=8", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == points[0].run.to_dict()["requests"]


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ("batch_size=3", "'batch_size=3' matches no point: the sweep has batch_size=1 prompt_len=8"),
        (
            "prompt_len=8",
            "matches 2 points: name one of batch_size=1 prompt_len=8 max_new_tokens=2; batch_size=2",
        ),
        ("depth=0", "AXIS=VALUE pairs, with AXIS in batch_size, prompt_len, max_new_tokens"),
        ("", "AXIS=VALUE pairs"),
    ],
)
def test_a_point_that_is_not_one_measured_point_is_a_one_line_error(
    scaling_model, tmp_path, point, message, capsys
):
    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1,2", "--prompt-len", "8", "--max-new-tokens", "2", "--json", str(path)]
    assert main(sweep_args(scaling_model, *args)) == 0
    capsys.readouterr()
    assert main(["report", str(path), "--point", point]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="llmprof-run"), "not an llmprof sweep"),
        (lambda d: d.update(version=9), "sweep format version 9"),
        (lambda d: d["points"][0].update(status="maybe"), "points[0].status"),
        (lambda d: d["points"][0]["params"].pop("batch_size"), "points[0].params"),
        (lambda d: d["points"][0].update(run=None), "points[0].run: a point that ran needs run"),
        (lambda d: d["points"][0]["run"]["requests"][0].update(marks=[]), "points[0].run: "),
    ],
)
def test_a_broken_sweep_file_is_refused_naming_the_field(scaling_model, tmp_path, change, message):
    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1", "--prompt-len", "8", "--max-new-tokens", "3", "--json", str(path)]
    assert main(sweep_args(scaling_model, *args)) == 0
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RunFormatError, match="sweep.json: ") as error:
        load_sweep(path)
    assert message in str(error.value)


def slowed(document: dict, factor: float) -> dict:
    """A sweep document whose every measured request repeats the point's first one, taking ``factor`` times as
    long (each mark's time from the start): no noise between repeats, a known slowdown."""
    document = json.loads(json.dumps(document))
    for point in document["points"]:
        requests = [r for r in point["run"]["requests"] if not r["warmup"]]
        times = requests[0]["marks"]["host_ns"]
        for request in requests:
            request["marks"]["host_ns"] = [times[0] + round((t - times[0]) * factor) for t in times]
    return document


def noiseless_sweep(model, path: str) -> dict:
    """A batch 1,2 sweep of 4 repeats saved at ``path`` with its repeats made noiseless; its document."""
    args = [
        "--batch-size",
        "1,2",
        "--prompt-len",
        "4",
        "--max-new-tokens",
        "4",
        "--repeats",
        "4",
        "--json",
        path,
    ]
    assert main(sweep_args(model, *args)) == 0
    measured = load_sweep(path).to_dict()  # its marks plain
    Path(path).write_text(json.dumps(slowed(measured, 1.0)))
    return measured


def test_compare_of_two_sweeps_fails_on_a_slower_one_and_passes_identical_ones(
    scaling_model, tmp_path, capsys
):
    a, same, b = (str(tmp_path / f"{name}.json") for name in ("a", "same", "b"))
    measured = noiseless_sweep(scaling_model, a)
    Path(b).write_text(json.dumps(slowed(measured, 1.10)))
    shutil.copy(a, same)
    capsys.readouterr()
    assert main(["compare", a, same, "--fail-on", "tpot:+2%"]) == 0
    out = capsys.readouterr().out
    assert "point by point" in out and out.count("no significant difference") == 6  # 2 points x 3 metrics
    assert main(["compare", a, b, "--fail-on", "tpot:+2%", "--format", "md"]) == 1
    captured = capsys.readouterr()
    rows = [line.split(" | ") for line in captured.out.splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert [(row[6], row[8]) for row in rows] == [("1.100", "1.10x slower")] * 2  # TPOT: B / A, verdict
    failed = [line for line in captured.err.splitlines() if "regression past --fail-on" in line]
    assert len(failed) == 2 and all("tpot +2.0%: B / A 1.100" in line for line in failed)
    assert main(["compare", a, b, "--fail-on", "tpot:+20%"]) == 0  # 10% is not past 20%


def test_compare_plot_of_two_sweeps_draws_each_points_ratio_and_names_the_missing_ones(
    scaling_model, tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    measured = noiseless_sweep(scaling_model, a)
    slower = slowed(measured, 1.25)
    slower["points"] = slower["points"][:1]  # batch 2 not measured in B
    Path(b).write_text(json.dumps(slower))
    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *_, **__: drawn.append(fig))
    out = tmp_path / "compare.png"
    assert main(["compare", a, b, "--format", "plot", "-o", str(out), "--fail-on", "tpot:+10%"]) == 1
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["TTFT", "TPOT", "TPS"]
    tpot = panels[1]
    assert [t.get_text() for t in tpot.get_yticklabels()] == [
        "batch 1, prompt 4, gen 4",
        "batch 2, prompt 4, gen 4",
    ]
    (marker,) = [line for line in tpot.get_lines() if line.get_marker() == "o"]  # batch 2 has no ratio
    assert marker.get_xdata()[0] == pytest.approx(1.25)
    notes = [t.get_text() for t in fig.axes[fig.axes.index(tpot) + 3].get_yticklabels()]  # its twin's labels
    assert (
        notes[0].startswith("1.250") and notes[0].endswith("1.25x slower") and notes[1] == "not measured in B"
    )


def test_fail_on_thresholds_judge_the_ci_not_the_ratio():
    from llmprof.analysis.compare import Threshold, compare_values

    slower = compare_values("tpot", [10.0, 10.1, 9.9, 10.0, 10.05], [11.0, 11.1, 10.9, 11.0, 11.05])
    assert Threshold.parse("tpot:+2%").exceeded(slower) and not Threshold.parse("tpot:+15%").exceeded(slower)
    assert Threshold.parse("tpot:5%") == Threshold("tpot", 1.05)  # no sign: TPOT's worse side is up
    assert Threshold.parse("tps:5%") == Threshold("tps", 0.95)  # TPS's is down
    noisy = compare_values("tpot", [8.0, 12.0, 10.0, 9.0, 11.0], [8.5, 12.6, 10.5, 9.4, 11.6])
    assert noisy.ratio > 1.02 and not Threshold.parse("tpot:+2%").exceeded(noisy)  # not with confidence
    for bad in ("tpot", "nope:+2%", "tpot:+2", "tpot:+x%", "output_tokens:+1%"):
        with pytest.raises(ValueError, match="--fail-on"):
            Threshold.parse(bad)


def test_the_context_curve_recovers_the_programmed_kv_cost_and_the_plot_draws_every_curve(
    scaling_model, tmp_path
):
    pytest.importorskip("matplotlib")
    from llmprof.report.plot import fit_context_cost
    from llmprof.report.sweep import mean_context

    path, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    args = [
        "--batch-size",
        "1,2",
        "--prompt-len",
        "16,512,2048",
        "--max-new-tokens",
        "6",
        "--json",
        str(path),
    ]
    assert main(sweep_args(scaling_model, *args, "--format", "plot", "-o", str(png))) == 0
    sweep = load_sweep(path)
    for batch in (1, 2):
        runs = [p.run for p in sweep.points if p.params["batch_size"] == batch]
        curve = [(mean_context(run), statistics.median(m.tpot for m in run.metrics()) * 1e3) for run in runs]
        fit = fit_context_cost(curve)
        assert fit.problem is None and fit.low <= fit.per_1k <= fit.high  # a result, with its CI
        assert fit.per_1k == pytest.approx(40.0 * batch, rel=0.05)  # kv_ms_per_1k x the batch's rows
    height = int.from_bytes(png.read_bytes()[20:24], "big")
    assert height == 3 * 420  # latency-throughput, TPOT against context, TTFT against prompt


def test_a_depth_sweep_measures_tpot_at_depth_and_recovers_the_kv_cost(scaling_model, tmp_path):
    from llmprof.report.plot import fit_context_cost
    from llmprof.report.sweep import mean_context

    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1", "--prompt-len", "16", "--depth", "0,1024,2048", "--max-new-tokens", "6"]
    assert main(sweep_args(scaling_model, *args, "--json", str(path))) == 0
    sweep = load_sweep(path)
    assert list(sweep.axes) == ["batch_size", "prompt_len", "depth", "max_new_tokens"]
    for point in sweep.points:
        depth = point.params["depth"]
        for raw in point.run.measured:  # the depth is context, not prefill: the prompt's 16 tokens are
            assert (raw.prompt_tokens, raw.cached_tokens, raw.prefill_tokens) == (16 + depth, depth, 16)
    curve = [
        (mean_context(p.run), statistics.median(m.tpot for m in p.run.metrics()) * 1e3) for p in sweep.points
    ]
    fit = fit_context_cost(curve)
    assert fit.problem is None and fit.per_1k == pytest.approx(40.0, rel=0.05)  # the programmed 40 ms per 1k


def test_a_depth_needs_a_model_that_returns_a_kv_cache():
    def no_cache(**kwargs):
        return SimpleNamespace(logits=torch.zeros(1, 1, 8))

    with pytest.raises(CaptureError, match="--depth needs a model that returns a KV cache"):
        depth_cache(no_cache, {"input_ids": torch.ones(1, 4, dtype=torch.long)}, 8)


def test_a_cached_prefix_is_context_for_the_roofline_not_prefill():
    shape = model_shape(tiny_llama())
    alone, on_top = shape.prefill_flops(1, 16), shape.prefill_flops(1, 16, cached=256)
    assert alone < on_top < shape.prefill_flops(1, 272)  # attention to the cache, but no matmul over it
    # the 16 new tokens of a 272-token context: the whole prefill's FLOPs less the cached 256's (whose output
    # head, on their last token, is not run)
    expected = shape.prefill_flops(1, 272) - shape.prefill_flops(1, 256) + 2 * shape.lm_head_params
    assert on_top == pytest.approx(expected, rel=1e-9)


def test_ctrl_c_keeps_every_finished_point_and_resume_measures_the_rest(
    scaling_model, tmp_path, monkeypatch, capsys
):
    from llmprof.cli import sweep as sweep_cli

    path = tmp_path / "sweep.json"
    args = ["--batch-size", "1,2,3", "--prompt-len", "8", "--max-new-tokens", "3", "--json", str(path)]
    real, started = sweep_cli.calls, []

    def interrupted_at_the_third(*a, **k):
        started.append(1)
        if len(started) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sweep_cli, "calls", interrupted_at_the_third)  # the calls of each point
    assert main(sweep_args(scaling_model, *args)) == 130
    sweep = load_sweep(path)
    assert sweep.interrupted and [p.params["batch_size"] for p in sweep.points] == [1, 2]
    assert "interrupted: 2 of 3 points done" in capsys.readouterr().err
    monkeypatch.setattr(sweep_cli, "calls", real)
    assert main(sweep_args(scaling_model, *args[:-2], "--resume", str(path))) == 0
    assert "sweep of 1 points (2 already measured)" in capsys.readouterr().err
    resumed = load_sweep(path)
    assert not resumed.interrupted and [p.status for p in resumed.points] == [OK, OK, OK]


def test_a_point_the_memory_estimate_cannot_fit_is_refused_before_any_work(tmp_path, capsys):
    path = tmp_path / "sweep.json"
    args = ["--model", "demo", "--batch-size", "1,4000000", "--prompt-len", "8", "--max-new-tokens", "2"]
    assert main(["sweep", *args, "--repeats", "1", "--no-telemetry", "--json", str(path)]) == 0
    small, huge = load_sweep(path).points
    assert small.status == OK and huge.status == "refused" and huge.run is None
    assert "a batch of 4000000 x (8 + 2) tokens needs about" in huge.reason


def test_the_time_left_counts_only_the_points_that_will_do_their_work(tmp_path, monkeypatch, capsys):
    """Prompts of 100 tokens do not fit the context of 64: refused at once, as the skipped batch 4 after batch 2
    ran out of memory; the time left is that of the points still to measure, at 10 s each on a fake clock."""
    from llmprof.cli import sweep as sweep_cli

    model = save_synthetic(
        tmp_path / "m", prefill_ms=1.0, decode_ms=1.0, oom_at_batch=2, max_position_embeddings=64
    )
    clock = [0.0]
    monkeypatch.setattr(
        sweep_cli, "time", SimpleNamespace(monotonic=lambda: clock[0], monotonic_ns=time.monotonic_ns)
    )
    real = sweep_cli.calls

    def ten_seconds(*args, **kwargs):
        clock[0] += 10.0
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_cli, "calls", ten_seconds)  # the calls of each point
    args = ["--batch-size", "1,2,4", "--prompt-len", "8,100", "--max-new-tokens", "3"]
    assert main(sweep_args(model, *args)) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("llmprof: [")]
    assert [line.split(": ")[2].split(",")[0] for line in progress] == [
        OK,
        REFUSED,
        FAILED,
        REFUSED,
        SKIPPED,
        REFUSED,
    ]
    assert [line[line.rindex("(") :] for line in progress] == [
        "(5 left, 2 to measure, about 20 s more)",  # batch 2 and 4 at prompt 8, at 10 s each
        "(4 left, 2 to measure, about 20 s more)",
        "(3 left, none to measure)",  # batch 2 ran out of memory: batch 4 is skipped
        "(2 left, none to measure)",
        "(1 left, none to measure)",
        "(0 left)",
    ]


def test_kernel_swaps_are_axes_each_on_its_own_variant(tmp_path, monkeypatch):
    from llmprof.workloads import variants

    copies = {}  # the patch of each variant -> the variant prepared for it
    real = variants.prepare

    def prepare(*args):
        prepared = real(*args)
        copies.update((p.variant.patch, p) for p in prepared)
        return prepared

    monkeypatch.setattr(variants, "prepare", prepare)
    model = save_synthetic(tmp_path / "swap", prefill_ms=1.0, decode_ms=4.0)
    (tmp_path / "llmprof_test_slow.py").write_text(
        "def same(model):\n    pass\n\ndef double(model):\n    model.config.decode_ms *= 2\n"
    )
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sweep.json"
    args = [
        "--variant",
        "patch=llmprof_test_slow:same,llmprof_test_slow:double",
        "--batch-size",
        "1,2",
        "--prompt-len",
        "4",
    ]
    assert main(sweep_args(model, *args, "--max-new-tokens", "4", "--json", str(path))) == 0
    sweep = load_sweep(path)
    assert list(sweep.axes) == ["patch", "batch_size", "prompt_len", "max_new_tokens"]
    assert [(p.params["patch"], p.params["batch_size"]) for p in sweep.points] == [
        ("llmprof_test_slow:same", 1), ("llmprof_test_slow:same", 2), ("llmprof_test_slow:double", 1), ("llmprof_test_slow:double", 2)
    ]  # fmt: skip
    for point in sweep.points:
        programmed = 4.0 * (2 if point.params["patch"] == "llmprof_test_slow:double" else 1) / 1e3
        assert point.run.config["variant"]["patch"] == point.params["patch"]
        log = copies[point.params["patch"]].model.forward_log
        assert copies[point.params["patch"]].model.config.decode_ms * 1e-3 == programmed
        for raw, m in zip([r for r in point.run.records if not r.warmup], point.run.metrics()):
            start, end = raw.window  # each call ran on its own patched copy: its forwards are in that log
            own = [(e - s) / 1e9 for s, e, generated in log if start <= s <= end and generated > 0]
            assert len(own) == 3 and programmed <= statistics.fmean(own) <= m.breakdown.decode_forward


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("loop=mine:fn", "KEY=V1,V2 with KEY in attn, compile, dtype, patch"),
        ("compile=maybe", "compile takes on or off"),
        ("dtype=fp8", "unknown dtype 'fp8'"),
    ],
)
def test_bad_kernel_swap_axes_are_one_line_errors_before_the_model_loads(option, message, capsys):
    assert main(["sweep", "--model", "no-such-model", "--variant", option]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def hand_run(
    decode_ms: list[float], warnings: tuple[str, ...] = (), model: str = "hand", batch: int = 1
) -> Run:
    """One hand-built request of ``batch`` x 6 tokens per entry of ``decode_ms`` (its forwards' time), each
    with ``warnings``: a point's run of known noise, no clock."""
    records = [
        record(host_marks(6, start=1000.0 * i, decode=ms), [6] * batch) for i, ms in enumerate(decode_ms)
    ]
    for raw in records:
        raw.warnings = list(warnings)
    return Run(config={"model": model}, environment={}, records=records)


def hand_sweep(runs: list[Run]) -> Sweep:
    """A batch-size sweep of ``runs`` (of batches 1, 2, 4 ...), one a point."""
    batches = [run.measured[0].batch_size for run in runs]
    points = [SweepPoint({"batch_size": b}, run=run) for b, run in zip(batches, runs)]
    return Sweep({"batch_size": batches}, {"model": runs[0].config["model"]}, points)


NOISY = (
    "noisy: TPOT varies by 121% across the 2 repeats (coefficient of variation > 10%; the slowest 13.0x the"
)
NOTES = [
    NOISY + " fastest): another busy process, changing clocks or too few warm-ups; compare with care",
    f"warning: {COMPILED} (4 requests)",
    "2 repeats: too few to judge the noise",
    "",
]


def test_a_points_note_carries_its_noise_and_compile_warnings_in_table_md_and_csv():
    # TPOT 16.5 ms and 214.5 ms (the forward, 1 ms sampling, 0.5 ms gap): 13x apart over 2 repeats
    sweep = hand_sweep(
        [
            hand_run([15.0, 213.0]),
            hand_run([15.0, 15.1, 14.9, 15.0], (COMPILED,), batch=2),
            hand_run([15.0, 15.05], batch=4),
            hand_run([15.0, 15.1, 14.9], batch=8),
        ]
    )
    assert [row["note"] for row in csv.DictReader(io.StringIO(render_sweep(sweep, "csv")))] == NOTES
    md = [line.split(" | ")[-1].removesuffix(" |") for line in render_sweep(sweep, "md").splitlines()[4:]]
    assert md == NOTES
    for width in (250, 100):  # the notes in the table, then below it
        out = io.StringIO()
        render_table(sweep, out, width)
        text = " ".join(out.getvalue().replace("│", " ").split())
        assert all(" ".join(note.split()[:6]) in text for note in NOTES[:3])


def test_a_sweep_comparison_shows_each_points_warnings_and_what_else_differs(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    quiet = [15.0, 15.1, 14.9, 15.0]
    save_sweep(hand_sweep([hand_run(quiet), hand_run(quiet, batch=2)]), a)
    save_sweep(
        hand_sweep([hand_run([15.0, 213.0], model="other"), hand_run(quiet, model="other", batch=2)]), b
    )
    out = run_in_process(capsys, "compare", str(a), str(b), "--format", "md").stdout.splitlines()
    notes = [line.split(" | ")[-1].removesuffix(" |") for line in out if line.startswith(("| 1 ", "| 2 "))]
    assert notes == [f"B: {NOTES[0]}", ""]
    assert [line for line in out if line.startswith("- warning")] == [
        "- warning: model differs: 'hand' vs 'other'"
    ]
    table = run_in_process(capsys, "compare", str(a), str(b)).stdout
    assert "warning: model differs: 'hand' vs 'other'" in table and "B: noisy: TPOT varies by 121%" in table


@pytest.mark.parametrize(
    ("curve", "problem"),
    [
        ([(100, 10.0), (1100, 12.0)], "fit over 2 points: not a result"),
        ([(100, 10.0), (100, 10.4), (1100, 12.0)], "fit over 2 points: not a result"),  # 2 distinct lengths
        ([(100, 10.0), (600, 11.5), (1100, 9.0), (1600, 10.6)], "KV cost not resolved: slope CI -"),
        ([(100, 12.0), (600, 11.0), (1100, 10.05), (1600, 9.0)], "KV cost negative (slope CI -"),
    ],
)
def test_a_fit_over_too_few_points_or_with_an_unresolved_or_negative_slope_is_not_a_result(curve, problem):
    from llmprof.report.plot import fit_context_cost

    fit = fit_context_cost(curve)
    assert fit.problem.startswith(problem) and fit.describe() == fit.problem
    assert "ms per 1k tokens" in fit.problem or "points" in fit.problem


def test_a_clean_fit_is_a_result_with_its_value_and_ci():
    from llmprof.report.plot import fit_context_cost

    fit = fit_context_cost([(100, 10.0), (600, 30.1), (1100, 49.9), (1600, 70.0)])  # 40 ms per 1k tokens
    assert fit.problem is None and 39.0 < fit.low < fit.per_1k < fit.high < 41.0
    assert (
        fit.describe() == f"fit 6.034 ms + 39.960 ms per 1k tokens (95% CI {fit.low:.3f} .. {fit.high:.3f})"
    )
    assert fit_context_cost([(100, 10.0), (100, 11.0)]) is None  # one length: no line at all


def depth_sweep(depths: list[int], ms_per_1k: float) -> Sweep:
    """A hand-built depth sweep (prompt 16, 6 tokens): each point's forwards take 5 ms + ``ms_per_1k`` per 1k
    tokens of its prompt and depth, 3 repeats each."""
    points = []
    for depth in depths:
        decode = 5.0 + ms_per_1k * (16 + depth) / 1000
        records = [
            record(host_marks(6, start=1000.0 * i, decode=decode), [6], prompt=16 + depth) for i in range(3)
        ]
        params = {"batch_size": 1, "prompt_len": 16, "depth": depth, "max_new_tokens": 6}
        points.append(SweepPoint(params, run=Run(config={"model": "hand"}, environment={}, records=records)))
    return Sweep({"batch_size": [1], "prompt_len": [16], "depth": depths, "max_new_tokens": [6]}, {}, points)


@pytest.mark.parametrize(
    ("depths", "ms_per_1k", "legend", "lines"),
    [
        (
            [0, 512, 1536],
            40.0,
            "batch 1: fit 6.360 ms + 40.000 ms per 1k tokens (95% CI 40.000 .. 40.000)",
            1,
        ),
        ([0, 1536], 40.0, "batch 1: fit over 2 points: not a result", 0),
        ([0, 512, 1536], -4.0, "batch 1: KV cost negative (slope CI -4.000 .. -4.000", 0),
    ],
)
def test_a_depth_sweep_draws_tpot_against_context_and_its_fit_only_when_it_is_a_result(
    monkeypatch, depths, ms_per_1k, legend, lines
):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from llmprof.report.plot import render_sweep

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *_, **__: drawn.append(fig))
    render_sweep(depth_sweep(depths, ms_per_1k), io.BytesIO())
    (fig,) = drawn
    (ax,) = fig.axes
    assert ax.get_title().startswith("TPOT against context")
    (curve,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(curve.get_xdata()) == len(depths)
    assert sum(line.get_linestyle() == ":" for line in ax.get_lines()) == lines  # the fit's line
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(text.startswith(legend) for text in texts), texts
