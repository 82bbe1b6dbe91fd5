"""Reporters: golden files for table, Markdown and CSV from a hand-built run; plots; `report` without torch;
bad input; atomic writes."""

import csv
import io
import json
import os
import random
import struct
import subprocess
import sys
from operator import attrgetter
from pathlib import Path

import pytest
from timelines import host_marks, record

from llmprof.analysis import registry
from llmprof.analysis.compare import compare_runs
from llmprof.analysis.record import Label, RawRequest
from llmprof.errors import RunFormatError
from llmprof.report import render
from llmprof.runfile import Run, encode_marks, load_run, save_run, write_atomic

GOLDEN = Path(__file__).parent / "golden"
MS = 1_000_000


def hand_request(index: int, warmup: bool = False) -> RawRequest:
    """Batch of 2, EOS at steps 6 and 4; prefill 40 ms (+index), decode steps of 10 ms + 0.5 ms per step."""
    t = 1_000 * MS * (index + 1)
    marks = [(Label.REQUEST_START, 0, t)]
    t += 2 * MS
    marks.append((Label.FORWARD_BEGIN, 0, t))
    t += (40 + index) * MS
    marks.append((Label.FORWARD_END, 0, t))
    t += MS
    marks.append((Label.TOKEN, 1, t))
    for k in range(2, 7):
        t += MS // 2
        marks.append((Label.FORWARD_BEGIN, k - 1, t))
        t += 10 * MS + k * MS // 2
        marks.append((Label.FORWARD_END, k - 1, t))
        t += MS // 4
        marks.append((Label.TOKEN, k, t))
    marks.append((Label.REQUEST_END, 6, t + 3 * MS))
    return RawRequest(
        label=[int(m[0]) for m in marks],
        step=[m[1] for m in marks],
        host_ns=[m[2] for m in marks],
        device_ns=[None] * len(marks),
        tokens_per_sequence=[6, 4],
        prompt_tokens=32,
        prefill_tokens=60,
        warmup=warmup,
        telemetry={"cpu_time_s": 0.1 + index / 100, "cpu_percent": 95.0 + index, "peak_rss_bytes": 500 << 20},
    )


def hand_run() -> Run:
    records = [hand_request(0, warmup=True)] + [hand_request(i) for i in (1, 2, 3)]
    samples = {"t_ns": [], "device": [], "cpu_percent": [], "rss_bytes": []}
    for i in range(80):
        samples["t_ns"].append(1_000 * MS + i * 50 * MS)
        samples["device"].append("cpu")
        samples["cpu_percent"].append(90.0 + i % 7)
        samples["rss_bytes"].append((400 + i) << 20)
    telemetry = {
        "kind": "process",
        "reason": "no GPU telemetry: the model runs on the CPU",
        "interval_s": 0.05,
        "devices": [{"index": "cpu", "cores": 2}],
        "errors": {},
        "samples": samples,
    }
    config = {
        "model": "hand-built",
        "device": "cpu",
        "dtype": "float32",
        "batch_size": 2,
        "prompt_tokens": 32,
        "max_new_tokens": 8,
        "repeats": 3,
        "warmup": 1,
    }
    return Run(
        config=config,
        environment={"python": "3.x"},
        records=records,
        telemetry=telemetry,
        created="2026-11-25T00:00:00+00:00",
    )


@pytest.fixture
def saved_run(tmp_path) -> Path:
    path = tmp_path / "run.json"
    save_run(hand_run(), path)
    return path


@pytest.mark.parametrize(
    "fmt, per_step, golden",
    [
        ("table", False, "run.table.txt"),
        ("md", False, "run.md"),
        ("csv", False, "run.csv"),
        ("csv", True, "run.steps.csv"),
    ],
)
def test_golden_outputs(saved_run, fmt, per_step, golden, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # a table for a file: its full width
    text = render(load_run(saved_run), fmt, per_step=per_step)
    path = GOLDEN / golden
    if os.environ.get("LLMPROF_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize(
    "fmt, per_step, golden",
    [("table", False, "run.table.txt"), ("md", False, "run.md"), ("csv", True, "run.steps.csv")],
)
def test_a_version_1_file_renders_as_it_did(fmt, per_step, golden, monkeypatch):
    """run.v1.json: the hand-built run as llmprof's version-1 writer saved it (plain, indented arrays)."""
    monkeypatch.delenv("COLUMNS", raising=False)
    old = load_run(GOLDEN / "run.v1.json")
    assert json.loads((GOLDEN / "run.v1.json").read_text())["version"] == 1
    assert old.records == hand_run().records
    assert render(old, fmt, per_step=per_step) == (GOLDEN / golden).read_text()


def test_the_run_file_is_compact_and_report_json_is_plain(saved_run, tmp_path):
    """The file: one request a line, its marks encoded; ``report --format json``: the same run with plain
    arrays, which loads back to the same records."""
    text = saved_run.read_text()
    lines = text.splitlines()
    assert sum(line.startswith('{"marks":{"encoding":') for line in lines) == len(hand_run().records)
    plain = render(load_run(saved_run), "json")
    document = json.loads(plain)
    assert document["requests"][1]["marks"]["host_ns"] == hand_run().records[1].host_ns
    (tmp_path / "plain.json").write_text(plain)
    assert load_run(tmp_path / "plain.json").records == load_run(saved_run).records == hand_run().records


def test_golden_values_are_the_known_ones():
    text = (GOLDEN / "run.md").read_text()
    # TTFT of request i is 2 + 40 + i + 1 ms: medians over requests 1..3 -> 45 ms
    assert "| TTFT (ms) | 45.00 |" in text
    # TPOT: sequence 1 (6 tokens): steps 2..6 last 0.5 + 10 + k/2 + 0.25 -> mean 12.75; sequence 2 (4): 12.25
    assert "| TPOT (ms) | 12.50 |" in text


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_is_a_readable_png(saved_run, tmp_path):
    import matplotlib.image

    data = render(load_run(saved_run), "plot")
    assert png_size(data) == (1200, 1260)  # three panels of 1200 x 420 px
    path = tmp_path / "run.png"
    path.write_bytes(data)
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.05 and len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 20
    no_telemetry = load_run(saved_run)
    no_telemetry.telemetry = None
    assert png_size(render(no_telemetry, "plot")) == (1200, 840)


def test_an_envelope_keeps_every_spike_in_at_most_its_columns():
    import numpy as np

    from llmprof.report.plot import envelope

    x = np.arange(1_000_000, dtype=float)
    y = np.sin(x / 5000)
    y[123_457] = 9.0  # one step's spike: kept, in its column
    xs, low, high = envelope(x, y, 1000)
    assert len(xs) == len(low) == len(high) == 1000
    assert high.max() == 9.0 and abs(xs[high.argmax()] - 123_457) < 1000
    assert low.min() == y.min() and np.all(low <= high) and np.all(np.diff(xs) > 0)
    short = envelope(x[:10], y[:10], 1000)  # fewer points than columns: each its own bin
    assert list(short[1]) == list(y[:10]) == list(short[2])


def _drawn_points(ax) -> int:
    """The most vertices of any line or filled area ``ax`` draws, and its count of bars."""
    paths = [line.get_xydata() for line in ax.get_lines()]
    paths += [p.vertices for c in ax.collections for p in c.get_paths()]
    return max((len(p) for p in paths), default=0) + len(ax.patches)


@pytest.mark.parametrize("steps, requests", [(20_000, 3), (6, 2500)], ids=["long", "many"])
def test_a_big_run_is_drawn_downsampled_and_says_so(steps, requests):
    """20k steps or 2500 requests: no panel draws more than about its pixel columns, and each title that
    downsampled says how; a run as small as the golden one is drawn whole, and says nothing."""
    import matplotlib.pyplot as plt

    from llmprof.report.plot import PLOT_COLUMNS, _breakdown_panel, _decode_panel

    records = [
        record(host_marks(steps, start=1e9 * i, decode=1.0 + (i % 3), sample=0.0, gap=0.0), [steps])
        for i in range(requests)
    ]
    run = Run(config={}, environment={}, records=records)
    fig, (decode, breakdown) = plt.subplots(2, 1)
    notes = [_decode_panel(decode, run, run.metrics()), _breakdown_panel(breakdown, run.metrics())]
    assert _drawn_points(decode) <= 2 * PLOT_COLUMNS + 4 and _drawn_points(breakdown) <= 4 * PLOT_COLUMNS + 4
    noted = [ax for ax, note in zip((decode, breakdown), notes) if note]
    assert noted == ([decode] if steps > PLOT_COLUMNS else [breakdown])
    assert all(f"drawn as {PLOT_COLUMNS} columns" in ax.get_title() for ax in noted)
    plt.close(fig)
    small = hand_run()
    fig, (decode, breakdown) = plt.subplots(2, 1)
    assert _decode_panel(decode, small, small.metrics()) is None
    assert _breakdown_panel(breakdown, small.metrics()) is None and "columns" not in decode.get_title()
    plt.close(fig)


def test_plot_without_matplotlib_says_how_to_get_it(saved_run, tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from llmprof.cli import main; "
        f"raise SystemExit(main(['report', {str(saved_run)!r}, '--format', 'plot', '-o', {str(tmp_path / 'p.png')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "pip install 'llmprof[plot]'" in result.stderr
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json", "trace", "plot"])
def test_report_runs_without_torch(saved_run, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'pynvml'): sys.modules[name] = None  # absent: importing fails\n"
        "from llmprof.cli import main\n"
        f"rc = main(['report', {str(saved_run)!r}, '--format', {fmt!r}, '-o', {str(out)!r}])\n"
        "assert not [m for m in ('torch', 'transformers', 'pynvml') if sys.modules.get(m) is not None]\n"
        "raise SystemExit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 100


def test_report_json_round_trips(saved_run):
    """The plain JSON is the file's document with each request's marks decoded, and nothing else changed."""
    again = json.loads(render(load_run(saved_run), "json"))
    for request in again["requests"]:
        request["marks"] = encode_marks(request["marks"])
    assert again == json.loads(saved_run.read_text())


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"format": "something-else"}', "not an llmprof run"),
        ("[1, 2]", "not an llmprof run"),
        ('{"format": "llmprof-run", "version": 3, "requests": []}', "newer than this llmprof reads"),
        ('{"format": "llmprof-run", "version": 1, "requests": [{"marks": {}}]}', "malformed llmprof run"),
    ],
)
def test_bad_run_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(RunFormatError, match=message):
        load_run(path)
    result = subprocess.run(
        [sys.executable, "-m", "llmprof", "report", str(path)], capture_output=True, text=True, check=False
    )
    assert (
        result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    )


def test_truncated_file_is_reported_not_parsed(saved_run, tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(saved_run.read_text()[:1000])
    result = subprocess.run(
        [sys.executable, "-m", "llmprof", "report", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "not valid JSON (truncated?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    write_atomic(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_keeps_permissions_and_symlinks(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "plain.txt", "x")
        assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    write_atomic(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"


def test_a_record_without_its_token_marks_is_a_malformed_run(tmp_path):
    data = hand_run().to_dict()
    marks = data["requests"][1]["marks"]
    keep = [i for i, label in enumerate(marks["label"]) if label != Label.TOKEN]
    for column in marks:
        marks[column] = [marks[column][i] for i in keep]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RunFormatError, match=r"requests\[1\].tokens_per_sequence: 6 tokens, more than its 0"):
        load_run(path)


def test_plot_draws_the_hardware_floor_when_the_run_has_a_roofline(saved_run):
    from llmprof.analysis.roofline import ModelShape, Peaks, Roofline

    shape = ModelShape(
        parameters=10**6,
        weight_bytes=4 * 10**6,
        embedding_bytes_per_token=0,
        matmul_params=10**6,
        lm_head_params=10**5,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=16,
        cache_dtype="float32",
        cache_dtype_bytes=4,
    )
    peaks = Peaks(
        device="cpu",
        dtype="float32",
        bandwidth=1e9,
        bandwidth_source="override",
        flops=1e11,
        flops_source="override",
    )
    run = load_run(saved_run)
    plain = render(run, "plot")
    run.roofline = Roofline(model=shape, peaks=peaks).to_dict()
    with_floor = render(run, "plot")
    assert png_size(with_floor) == png_size(plain) and with_floor != plain


def test_one_registry_entry_reaches_the_tables_the_csv_and_comparisons(monkeypatch):
    extra = registry.Metric(
        "latency_to_last_token",
        "latency to last token",
        "s",
        attrgetter("latency_to_last_token"),
        better="lower",
    )
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, extra))
    monkeypatch.setitem(registry.BY_NAME, extra.name, extra)
    run = hand_run()
    assert "| latency to last token (ms) | 108.8 |" in render(run, "md")
    assert render(run, "csv").splitlines()[0].split(",").count("latency_to_last_token_s") == 1
    (comparison,) = [c for c in compare_runs(run, run) if c.metric == extra.name]
    assert comparison.ratio == 1.0 and comparison.unit == "s"


def test_csv_floats_are_rounded_to_9_decimals_and_written_in_their_shortest_form():
    from llmprof.report.csv_format import cell

    floats = [0.052282903000000006, 0.043000000000000003, 91.11617312072893, 1e-10, 2.5, float("nan")]
    assert [cell(v) for v in floats] == ["0.052282903", "0.043", "91.116173121", "0.0", "2.5", "nan"]
    assert [cell(v) for v in (None, 3, "6;4")] == ["", 3, "6;4"]  # None empty, the rest as they are
    run = hand_run()
    request = next(csv.DictReader(io.StringIO(render(run, "csv"))))
    assert (request["ttft_s"], request["itl_p50_s"], request["host_prep_s"]) == ("0.043", "0.01275", "0.002")
    step = next(csv.DictReader(io.StringIO(render(run, "csv", per_step=True))))
    assert (step["itl_s"], step["forward_s"], step["kv_length"]) == ("0.01175", "0.011", "33")


def test_a_noisy_run_says_so_in_one_line_and_a_quiet_one_says_nothing():
    quiet = render(hand_run(), "md")
    assert "noisy" not in quiet
    rng = random.Random(0)
    records = [
        record(host_marks(8, start=1000.0 * i, decode=15.0 * rng.lognormvariate(0.0, 0.3)), [8])
        for i in range(6)
    ]
    noisy = render(Run(config={}, environment={}, records=records), "md").splitlines()
    (line,) = [line for line in noisy if "noisy" in line]
    assert line.startswith("- noisy: TPOT varies by") and "across the 6 repeats" in line
    starved = hand_run()
    for raw in starved.records:
        raw.telemetry["cpu_percent"] = 30.0
    assert "- noisy: the process got 30% of a core during its requests" in render(starved, "md")


@pytest.mark.parametrize("columns", [80, 100])
def test_a_narrow_terminal_gets_a_table_that_fits_it(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    lines = render(hand_run(), "table").splitlines()
    assert max(len(line) for line in lines[1:]) <= columns  # the header line may wrap, the tables do not
    rows = [line for line in lines if line.startswith("│ TTFT (ms)")]
    assert len(rows) == 1 and rows[0].split("│")[2].strip() == "45.00"  # one line a row: median first
    assert "95% CI of median" in "\n".join(lines) and " mean " not in "\n".join(lines)


def test_summaries_are_computed_once_for_every_format_of_a_run(monkeypatch):
    """table, md and again table: one bootstrap of the request metrics; a new measured record: one more."""
    import llmprof.runfile

    calls = []
    real = registry.summaries
    monkeypatch.setattr(llmprof.runfile.registry, "summaries", lambda *a: calls.append(a) or real(*a))
    run = hand_run()
    first = [render(run, fmt) for fmt in ("table", "md", "table")]
    assert len([c for c in calls if len(c) == 1]) == 1 and first[0] == first[2]
    run.records.append(hand_request(4))
    assert render(run, "md") != first[1] and len([c for c in calls if len(c) == 1]) == 2


def test_a_render_pauses_the_cyclic_collector_and_restores_it():
    """Every renderer runs with the collector paused (its objects are acyclic) and leaves it as it was."""
    import gc

    from llmprof.report import renderer

    seen = []
    real = Run.metrics
    try:
        Run.metrics = lambda self: seen.append(gc.isenabled()) or real(self)
        assert gc.isenabled()
        render(hand_run(), "md")
        assert seen and not any(seen) and gc.isenabled()
        gc.disable()
        renderer("csv")(hand_run(), io.StringIO())
        assert not gc.isenabled()  # off before: off after
    finally:
        gc.enable()
        Run.metrics = real


@pytest.mark.parametrize(
    ("decode_ms", "legend", "lines"),
    [
        # each request flat, the requests 10% apart: no slope to resolve
        (lambda i, step: 15.0 * (1 + 0.1 * i), "KV cost not resolved: slope CI -", 0),
        (
            lambda i, step: 10.0 + 0.5 * step,
            "fit 5.500 ms + 500.000 ms per 1k tokens (95% CI 500.000 .. 500.000)",
            1,
        ),
    ],
)
def test_the_run_plot_draws_its_context_fit_only_when_it_is_a_result(monkeypatch, decode_ms, legend, lines):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from llmprof.analysis.record import Label

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *_, **__: drawn.append(fig))
    records = []
    for i in range(4):  # 8 steps after a 10-token prompt, each step's forward decode_ms(i, step)
        t, marks = 1000.0 * i, [(Label.REQUEST_START, 0, 1000.0 * i)]
        marks += [(Label.FORWARD_BEGIN, 0, t + 1), (Label.FORWARD_END, 0, t + 2), (Label.TOKEN, 1, t + 3)]
        t += 3
        for step in range(2, 9):
            t += decode_ms(i, step)
            marks += [(Label.FORWARD_BEGIN, step, t - decode_ms(i, step)), (Label.FORWARD_END, step, t)]
            marks.append((Label.TOKEN, step, t))
        records.append(record(marks + [(Label.REQUEST_END, 0, t + 1)], [8]))
    render(Run(config={}, environment={}, records=records), "plot")
    ax = drawn[0].axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(text.startswith(legend) for text in texts), texts
    assert sum(line.get_linestyle() == ":" for line in ax.get_lines()) == lines
