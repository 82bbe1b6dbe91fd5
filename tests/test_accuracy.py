"""Reported metrics against ground truth: a model whose forward takes a known time and emits EOS on cue."""

import statistics
import time

import pytest

import llmprof
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

PREFILL_MS, DECODE_MS = 40.0, 15.0


def bare_wall(model, inputs, max_new_tokens, runs=3):
    """Median wall time of unprofiled generate() calls: the independent measurement."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.generate(**inputs, max_new_tokens=max_new_tokens)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_ttft_and_tpot_within_5_percent_of_truth():
    eos_step = 12
    model = synthetic_model(prefill_ms=PREFILL_MS, decode_ms=DECODE_MS, eos_at=[eos_step])
    inputs = synthetic_prompt(1, 16)
    model.generate(**inputs, max_new_tokens=2)  # warm-up
    # Truth, measured without the profiler: TTFT is a 1-token generate(); each further step costs the
    # forward plus the generate loop's own work, i.e. the difference of two calls divided by the extra steps.
    wall_1 = bare_wall(model, inputs, 1)
    wall_n = bare_wall(model, inputs, eos_step)
    true_ttft, true_tpot = wall_1, (wall_n - wall_1) / (eos_step - 1)

    with llmprof.profile(model) as prof:
        for _ in range(3):
            model.generate(**inputs, max_new_tokens=40)
    ttft = statistics.median(r.ttft for r in prof.requests)
    tpot = statistics.median(r.tpot for r in prof.requests)
    assert all(r.output_tokens == [eos_step] for r in prof.requests)  # EOS step, not max_new_tokens
    assert ttft == pytest.approx(true_ttft, rel=0.05)
    assert tpot == pytest.approx(true_tpot, rel=0.05)
    # and the breakdown finds the known forward times
    b = prof.requests[-1].breakdown
    assert b.prefill == pytest.approx(PREFILL_MS / 1e3, rel=0.05)
    assert b.decode_forward == pytest.approx(DECODE_MS / 1e3, rel=0.05)
    assert b.decode_forward + b.sampling + b.host_gap == pytest.approx(tpot, rel=0.02)


def test_ragged_eos_in_a_batch_of_four():
    eos = [1, 3, 5, 8]
    model = synthetic_model(prefill_ms=10.0, decode_ms=5.0, eos_at=eos)
    with llmprof.profile(model) as prof:
        out = model.generate(**synthetic_prompt(4, 6), max_new_tokens=20)
    r = prof.requests[-1]
    assert out.shape[1] == 6 + max(eos)
    assert r.output_tokens == eos
    assert r.tpot_per_sequence[0] is None
    for n, tpot in zip(eos[1:], r.tpot_per_sequence[1:]):
        assert tpot == pytest.approx(statistics.fmean(r.itl[: n - 1]))  # its own steps, not the batch's
        assert 0.005 <= tpot < 0.0075  # the 5 ms forward plus the loop's own cost
    logged = [(end - start) / 1e9 for start, end, generated in model.forward_log if generated > 0]
    assert r.breakdown.decode_forward == pytest.approx(
        statistics.fmean(logged), rel=0.05
    )  # the model's own clock
    assert r.tpot == pytest.approx(statistics.fmean(r.tpot_per_sequence[1:]))
    assert len(r.itl) == max(eos) - 1
    assert r.tps == pytest.approx(sum(eos) / r.latency)


def test_length_limit_counts_real_tokens():
    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0, eos_at=[0, 4])
    with llmprof.profile(model) as prof:
        model.generate(**synthetic_prompt(2, 5), max_new_tokens=7)
    assert prof.requests[-1].output_tokens == [7, 4]
