"""Reported metrics against ground truth taken in the same call: a model whose forward takes a known time,
logs when each forward ran (on the timeline's clock: CLOCK_MONOTONIC, as ``time.perf_counter_ns`` on
Linux) and emits EOS on cue. Every check orders or compares stamps of one call, so a busy machine moves
both sides alike."""

import statistics
import time

import pytest

import llmprof
from llmprof import Label
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

PREFILL_MS, DECODE_MS = 40.0, 15.0
NS = 1e-9


def stamp_generate_entries(model) -> list[int]:
    """Log the moment the model's own generate() is entered (inside the profiler's wrapper, after ``t0``)."""
    entries = []
    inner = model.generate

    def generate(*args, **kwargs):
        entries.append(time.perf_counter_ns())
        return inner(*args, **kwargs)

    model.generate = generate
    return entries


def forwards(model) -> dict[int, tuple[int, int]]:
    """The model's own log of the last call: generated tokens before the forward -> (start, end)."""
    return {generated: (start, end) for start, end, generated in model.forward_log}


def profiled_call(model, prof, inputs, **kwargs):
    """One generate() under the profiler: its record, the forward log, and stamps taken around it."""
    model.forward_log.clear()
    before = time.perf_counter_ns()
    model.generate(**inputs, **kwargs)
    after = time.perf_counter_ns()
    return prof.records[-1], forwards(model), before, after


def test_every_stamp_lies_between_the_forwards_that_bracket_it():
    eos_step = 12
    model = synthetic_model(prefill_ms=PREFILL_MS, decode_ms=DECODE_MS, eos_at=[eos_step])
    inputs = synthetic_prompt(1, 16)
    entries = stamp_generate_entries(model)
    with llmprof.profile(model) as prof:
        for _ in range(3):
            raw, log, before, after = profiled_call(model, prof, inputs, max_new_tokens=40)
            assert sorted(log) == list(range(eos_step))  # the EOS step, not max_new_tokens
            start, end = raw.window
            assert before <= start <= entries[-1] <= log[0][0] and end <= after
            tokens = {k: raw.times[i] for k, i in raw.marks.first(Label.TOKEN).items()}
            assert sorted(tokens) == list(range(1, eos_step + 1))
            for k, t in tokens.items():  # T_k: after the forward that made token k, before the next one
                assert log[k - 1][1] <= t <= (log[k][0] if k < eos_step else after)
            begins, ends = raw.marks.first(Label.FORWARD_BEGIN), raw.marks.last(Label.FORWARD_END)
            for step, (forward_start, forward_end) in log.items():  # each marked span holds its forward
                assert raw.times[begins[step]] <= forward_start <= forward_end <= raw.times[ends[step]]
    assert all(r.output_tokens == [eos_step] for r in prof.requests)
    # the metrics of the last call against its own forwards
    r = prof.requests[-1]
    n = eos_step
    assert (log[0][1] - entries[-1]) * NS <= r.ttft <= (log[1][0] - before) * NS
    assert (log[n - 1][1] - log[1][0]) * NS / (n - 1) <= r.tpot <= (after - log[0][1]) * NS / (n - 1)
    # each marked span holds the model's own forward and lies within its step (ground truth, same call)
    decode = statistics.fmean(end - start for step, (start, end) in log.items() if step > 0) * NS
    b = r.breakdown
    assert (log[0][1] - log[0][0]) * NS <= b.prefill <= r.ttft
    assert decode <= b.decode_forward <= statistics.fmean(r.itl)


def test_ragged_eos_in_a_batch_of_four():
    eos = [1, 3, 5, 8]
    model = synthetic_model(prefill_ms=10.0, decode_ms=5.0, eos_at=eos)
    with llmprof.profile(model) as prof:
        _, log, _, after = profiled_call(model, prof, synthetic_prompt(4, 6), max_new_tokens=20)
    r = prof.requests[-1]
    assert r.output_tokens == eos and sorted(log) == list(range(max(eos)))
    assert r.tpot_per_sequence[0] is None
    for n, tpot in zip(eos[1:], r.tpot_per_sequence[1:]):
        assert tpot == pytest.approx(statistics.fmean(r.itl[: n - 1]))  # its own steps, not the batch's
        # its last token came after forward n-1 and before forward n (or the end of the call)
        latest = log[n][0] if n < max(eos) else after
        assert (log[n - 1][1] - log[1][0]) * NS / (n - 1) <= tpot <= (latest - log[0][1]) * NS / (n - 1)
    logged = [(end - start) * NS for step, (start, end) in log.items() if step > 0]
    assert statistics.fmean(logged) <= r.breakdown.decode_forward <= statistics.fmean(r.itl)  # same call
    assert r.tpot == pytest.approx(statistics.fmean(r.tpot_per_sequence[1:]))
    assert len(r.itl) == max(eos) - 1
    assert r.tps == pytest.approx(sum(eos) / r.latency)


def test_length_limit_counts_real_tokens():
    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0, eos_at=[0, 4])
    with llmprof.profile(model) as prof:
        model.generate(**synthetic_prompt(2, 5), max_new_tokens=7)
    assert prof.requests[-1].output_tokens == [7, 4]
