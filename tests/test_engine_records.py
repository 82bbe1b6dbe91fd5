"""An engine's records and steps (vLLM) built by hand, no vLLM: their metrics exactly (queue time among them),
the run file round trip, refusals of malformed ones, every report format of a run that holds them, and vLLM's own
accounting (its TTFT and token stamps) beside llmprof's."""

from __future__ import annotations

import io
import json

import pytest

from llmprof.analysis.engine_steps import COLUMNS, engine_step_stats
from llmprof.analysis.metrics import compute_request
from llmprof.analysis.record import Label, RawRequest
from llmprof.errors import RunFormatError
from llmprof.report import render
from llmprof.report.engine_steps import render_csv
from llmprof.runfile import Run, dump_run, load_run, save_run

MS = 1_000_000
T0 = 10_000 * MS
ENGINE = "an engine's request: its times are the engine's host stamps, amid the other requests; no breakdown"


def engine_request(
    i: int, warmup: bool = False, tokens_per_step: list[int] | None = None, finish: str | None = "length"
) -> RawRequest:
    """Request ``i``: arrives at T0 + 100 ms * i, scheduled 2 ms later, tokens at +10, +15, +20, +25 ms (one
    mark a step), finished at +26 ms."""
    start = T0 + 100 * MS * i
    tokens = [start + t * MS for t in (10, 15, 20, 25)]
    steps = len(tokens)
    label = [Label.REQUEST_START, Label.SCHEDULED] + [Label.TOKEN] * steps + [Label.REQUEST_END]
    return RawRequest(
        label=[int(x) for x in label],
        step=[0, 0, *range(1, steps + 1), steps],
        host_ns=[start, start + 2 * MS, *tokens, start + 26 * MS],
        device_ns=[None] * (steps + 3),
        tokens_per_sequence=[sum(tokens_per_step) if tokens_per_step else steps],
        prompt_tokens=16,
        warmup=warmup,
        warnings=[ENGINE],
        tokens_per_step=tokens_per_step,
        engine={"name": "vllm", "request_id": f"req-{i}", "finish_reason": finish},
    )


def engine_steps(n: int = 12, warmups: int = 2) -> dict[str, list]:
    """``n`` steps of 5 ms from T0 (schedule 0.2 ms, forward 4 ms, sampling 0.5 ms, output update 0.3 ms),
    the first ``warmups`` of a warm-up call; 4 requests a step, the first one's 16 prefill tokens."""
    begin = [T0 + k * 5 * MS for k in range(n)]
    return {
        "begin_ns": begin,
        "scheduled_ns": [b + 200_000 for b in begin],
        "forward_end_ns": [b + 4_200_000 for b in begin],
        "sampled_ns": [b + 4_700_000 for b in begin],
        "end_ns": [b + 5_000_000 for b in begin],
        "requests": [4] * n,
        "prefill_tokens": [16] + [0] * (n - 1),
        "decode_tokens": [3] + [4] * (n - 1),
        "kv_usage": [None] + [0.01 * k for k in range(1, n)],
        "warmup": [k < warmups for k in range(n)],
    }


def engine_run(with_steps: bool = True) -> Run:
    return Run(
        config={
            "model": "hand-built",
            "device": "cpu",
            "batch_size": 4,
            "prompt_tokens": 16,
            "max_new_tokens": 4,
        },
        environment={"python": "3.x"},
        records=[engine_request(0, warmup=True)] + [engine_request(i) for i in (1, 2, 3)],
        engine_steps=engine_steps() if with_steps else None,
        created="2026-11-25T00:00:00+00:00",
    )


def reported_run(after_ms: tuple[tuple[float, float], ...] = ((0.2, 0.3), (0.3, 0.5), (0.4, 0.4))) -> Run:
    """:func:`engine_run` with vLLM's figures on its measured requests 1, 2, 3: their first and last token
    stamped ``after_ms`` after llmprof's T_1 and T_4, their TTFT by vLLM 0.05 ms short of the first stamp."""
    run = engine_run()
    for raw, (first, last) in zip(run.records[1:], after_ms):
        start = raw.host_ns[0]
        first_ns, last_ns = raw.host_ns[2] + round(first * MS), raw.host_ns[-2] + round(last * MS)
        raw.engine["reported"] = {
            "ttft_s": (first_ns - start - 50_000) * 1e-9,
            "first_token_ns": first_ns,
            "last_token_ns": last_ns,
        }
    return run


def test_an_engine_request_has_the_metrics_of_its_marks_and_its_queue_time():
    m = compute_request(engine_request(1))
    assert m.ttft == pytest.approx(0.010, abs=1e-12)
    assert m.queue == pytest.approx(0.002, abs=1e-12)
    assert m.tpot == pytest.approx(0.005, abs=1e-12)
    assert m.itl == pytest.approx([0.005] * 3, abs=1e-12)
    assert m.latency == pytest.approx(0.026, abs=1e-12)
    assert m.tps == pytest.approx(4 / 0.026)
    assert m.breakdown.prefill is None and m.breakdown.host_prep is None  # no breakdown


def test_speculative_steps_count_their_tokens():
    m = compute_request(engine_request(1, tokens_per_step=[1, 3, 2, 2]))
    assert m.output_tokens == [8] and m.step_tokens == [3, 2, 2]
    assert m.tpot == pytest.approx(0.015 / 7, abs=1e-12) and m.queue == pytest.approx(0.002, abs=1e-12)


def test_a_record_without_a_scheduled_mark_has_no_queue_time():
    raw = engine_request(1)
    del raw.label[1], raw.step[1], raw.host_ns[1], raw.device_ns[1]
    assert compute_request(raw).queue is None


@pytest.mark.parametrize("compact", [True, False])
def test_the_engine_entry_and_steps_round_trip(tmp_path, compact):
    run = reported_run()
    run.records[2].engine["finish_reason"] = None
    path = tmp_path / "run.json"
    if compact:
        save_run(run, path)
    else:
        path.write_text(dump_run(run, compact=False))
    loaded = load_run(path)
    assert loaded.engine_steps == run.engine_steps
    assert [r.engine for r in loaded.records] == [r.engine for r in run.records]
    assert [r.label for r in loaded.records] == [r.label for r in run.records]
    assert loaded.summaries()["queue"].median == pytest.approx(0.002, abs=1e-12)


def test_a_run_without_engine_data_writes_none():
    run = engine_run(with_steps=False)
    for record in run.records:
        record.engine = None
    document = run.to_dict()
    assert "engine_steps" not in document and all("engine" not in r for r in document["requests"])


def _document(change) -> dict:
    document = json.loads(dump_run(engine_run(), compact=False))
    change(document)
    return document


def _set(path: str, value):
    def change(document: dict) -> None:
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return change


def _reported(**changes):
    """Request 1's vLLM figures, well formed but for ``changes`` (a None drops the field)."""
    reported = {"ttft_s": 0.01, "first_token_ns": T0 + 110 * MS, "last_token_ns": T0 + 125 * MS} | changes
    return _set("requests.1.engine.reported", {k: v for k, v in reported.items() if v is not None})


def _scheduled_first(document: dict) -> None:
    """Request 1 scheduled before it arrived: its SCHEDULED mark first."""
    document["requests"][1]["marks"]["label"][:2] = [int(Label.SCHEDULED), int(Label.REQUEST_START)]


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("engine_steps.requests", [4] * 11), "engine_steps.requests: 11 rows, not 12 as begin_ns"),
        (
            _set("engine_steps.forward_end_ns.3", T0),
            "engine_steps.forward_end_ns[3]: earlier than its scheduled_ns",
        ),
        (_set("engine_steps.kv_usage.2", 1.5), "engine_steps.kv_usage[2]: 1.5 is out of range (0..1)"),
        (_set("engine_steps.warmup.0", 1), "engine_steps.warmup[0]: true or false is needed, not int"),
        (_set("engine_steps.decode_tokens.1", -1), "engine_steps.decode_tokens[1]: -1 is out of range"),
        (_set("engine_steps.extra", []), "engine_steps: unknown fields ['extra']"),
        (_set("engine_steps", []), "engine_steps: dict/null is needed, not list"),
        (
            _set("requests.1.engine.request_id", 7),
            "requests[1].engine.request_id: a string is needed, not int",
        ),
        (
            _set("requests.1.engine.finish_reason", "x" * 201),
            "requests[1].engine.finish_reason: 201 characters",
        ),
        (_set("requests.1.engine.port", "8000"), "requests[1].engine: unknown fields ['port']"),
        (_set("requests.1.marks.host_ns.1", T0 + 100 * MS - 1), "requests[1].marks.host_ns[1]: not monotone"),
        (
            _set("requests.1.engine.reported", None),
            "requests[1].engine.reported: an object is needed, not null",
        ),
        (_reported(first_token_ns=None), "requests[1].engine.reported.first_token_ns: missing"),
        (_reported(tpot_s=0.005), "requests[1].engine.reported: unknown fields ['tpot_s']"),
        (_reported(ttft_s="fast"), "requests[1].engine.reported.ttft_s: a number is needed, not str 'fast'"),
        (_reported(ttft_s=True), "requests[1].engine.reported.ttft_s: a number is needed, not bool"),
        (_reported(ttft_s=-0.001), "requests[1].engine.reported.ttft_s: -0.001 is out of range (0..1e+06)"),
        (_reported(ttft_s=2e6), "requests[1].engine.reported.ttft_s: 2000000.0 is out of range (0..1e+06)"),
        (
            _reported(first_token_ns=1.5),
            "requests[1].engine.reported.first_token_ns: an integer is needed, not float 1.5",
        ),
        (
            _reported(last_token_ns=2**63),
            f"requests[1].engine.reported.last_token_ns: {2**63} is out of range",
        ),
        (
            _reported(last_token_ns=T0 + 110 * MS - 1),
            "requests[1].engine.reported.last_token_ns: earlier than its first_token_ns",
        ),
        (_scheduled_first, "requests[1]: queue time -0.002 s is not within 0..TTFT (0.008 s)"),
    ],
)
def test_malformed_engine_data_is_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_document(change)))
    with pytest.raises(RunFormatError) as info:
        load_run(path)
    assert str(info.value).startswith(f"{path}: malformed llmprof run: ")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_step_summaries_leave_the_warm_up_steps_out():
    stats = engine_step_stats(engine_steps())
    assert (stats.steps, stats.warmup_steps) == (10, 2)
    assert stats.phases["forward"].median == pytest.approx(0.004, abs=1e-12)
    assert stats.phases["step"].max == pytest.approx(0.005, abs=1e-12)
    assert stats.counts["prefill_tokens"].max == 0 and stats.counts["decode_tokens"].median == 4
    assert stats.kv_usage.max == pytest.approx(0.11) and stats.kv_usage.n == 10


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json", "trace", "perfetto", "plot"])
def test_every_format_renders_a_run_with_engine_steps(fmt):
    out = render(engine_run(), fmt)
    assert out
    if fmt in ("table", "md"):
        assert "Engine steps (10 steps, per step)" in out and "queue time (ms)" in out
        assert "output update (ms)" in out and "KV cache used (%)" in out
        assert "2 warm-up steps left out" in out


def test_the_trace_has_an_engine_process_with_a_track_per_phase_and_counters():
    from llmprof.report.trace import build_trace

    events = build_trace(engine_run())["traceEvents"]
    engine = [e for e in events if e["pid"] == 3]
    threads = {e["args"]["name"] for e in engine if e["name"] == "thread_name"}
    assert threads == {"schedule", "forward", "sampling", "output update"}
    forward = [e for e in engine if e["ph"] == "X" and e["name"] == "forward"]
    assert len(forward) == 12 and forward[3]["dur"] == 4000.0 and forward[3]["args"] == {"step": 3}
    assert forward[0]["ts"] == 200.0  # the first step began at the trace's origin, T0
    counters = [e for e in engine if e["ph"] == "C" and e["name"] == "engine step"]
    assert counters[0]["args"] == {"requests": 4, "prefill tokens": 16, "decode tokens": 3}
    assert len([e for e in engine if e["name"] == "KV cache used (%)"]) == 11


def test_the_engine_steps_csv_has_a_row_per_step():
    out = io.StringIO()
    render_csv(engine_run(), out)
    lines = out.getvalue().splitlines()
    assert lines[0] == ",".join(
        ["step", *COLUMNS, "schedule_s", "forward_s", "sampling_s", "output_update_s", "step_s"]
    )
    assert len(lines) == 13
    assert lines[3].split(",")[-5:] == ["0.0002", "0.004", "0.0005", "0.0003", "0.005"]


def test_a_run_without_engine_data_has_no_engine_section_nor_queue_time():
    run = engine_run(with_steps=False)
    for record in run.records:
        record.engine = None
        del record.label[1], record.step[1], record.host_ns[1], record.device_ns[1]
    for fmt in ("table", "md"):
        text = render(run, fmt)
        assert "Engine steps" not in text and "queue time" not in text
        assert "| 3 repeats after 1 warm-up" in text and "host-bound share: not available" in text
    assert "queue" not in render(run, "csv").splitlines()[0]


def test_vllms_own_accounting_is_shown_beside_llmprofs():
    md = render(reported_run(), "md")
    assert (
        "#### vLLM's own accounting (3 requests)\n\n"
        "| measure | median | max |\n"
        "| --- | ---: | ---: |\n"
        "| TTFT, llmprof (ms) | 10.00 | 10.00 |\n"
        "| TTFT, vLLM (ms) | 10.25 | 10.35 |\n"
        "| vLLM's first token - T_1 (ms) | 0.300 | 0.400 |\n"
        "| vLLM's last token - last T_k (ms) | 0.400 | 0.500 |\n"
    ) in md
    assert (
        "- vLLM's own accounting: vLLM stamps a token when its scheduler updates the request with the step's"
        " output (the step's output update, after sampling): llmprof's T_k is the end of sampling\n"
    ) in md
    assert "later than vLLM's" not in md


def test_llmprof_later_than_vllm_is_a_warning_and_requests_without_its_figures_are_counted():
    run = reported_run(((0.2, -0.1), (-0.3, 0.5)))
    md = render(run, "md")
    assert "#### vLLM's own accounting (2 of 3 requests)" in md
    assert "| vLLM's first token - T_1 (ms) | -0.050 | 0.200 |" in md
    assert "| vLLM's last token - last T_k (ms) | 0.200 | 0.500 |" in md
    assert (
        "- warning: llmprof's T_1 is later than vLLM's first token stamp in 1 of 2 requests (by up to 0.300 ms):"
        " it should never happen\n"
        "- warning: llmprof's last T_k is later than vLLM's last token stamp in 1 of 2 requests (by up to 0.100"
        " ms): it should never happen\n"
    ) in md


def test_vllms_accounting_fits_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = render(reported_run(((0.2, -0.1), (0.3, 0.5))), "table")
    assert "vLLM's own accounting (2 of 3 requests)" in text and "│ TTFT, vLLM (ms)" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_run_without_vllms_figures_has_no_accounting():
    for fmt in ("table", "md"):
        assert "own accounting" not in render(engine_run(), fmt)


@pytest.mark.parametrize(
    "repeats, header",
    [(3, "| 3 requests in 3 repeats after 1 warm-up"), (None, "| 3 requests after 1 warm-up")],
)
def test_the_header_of_an_engine_run_counts_its_requests_and_repeats(repeats, header):
    run = engine_run()
    if repeats is not None:
        run.config["repeats"] = repeats
    md = render(run, "md")
    assert md.splitlines()[0].endswith(header) and "host-bound share" not in md


def test_an_engine_runs_request_spread_is_not_called_noise():
    from llmprof.analysis.noise import ENGINE_REQUESTS
    from llmprof.report.summary import measured_warnings

    run = engine_run()
    slow = engine_request(9)  # a request that queued 400 ms behind others: its TTFT is no noise
    slow.host_ns = [
        t + (400 * MS if label != Label.REQUEST_START else 0) for label, t in zip(slow.label, slow.host_ns)
    ]
    run.records.append(slow)
    warnings = measured_warnings(run)
    assert ENGINE_REQUESTS in warnings and not any(w.startswith("noisy: TTFT") for w in warnings)
