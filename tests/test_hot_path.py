"""The profiler's own cost, checked without a clock: the Python-level calls it adds per decode step (counted
with sys.setprofile over two generation lengths), and the peak memory a profiled generate() adds against a
bare one (each in its own process). Both are deterministic: machine load does not move them."""

import collections
import sys
from pathlib import Path

import pytest
import torch

import llmprof
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

SHORT, LONG = 20, 120
# What profiling a generate() adds per decode step, as sys.setprofile sees it: nothing. The marked forward and the
# token-marking criteria list are the extension's callables (a vectorcall type, an instance method in C), which
# run no Python frame and are no C-function call of Python's; any frame or C call added to the hot path shows.
PY_BUDGET = 0
TOTAL_BUDGET = 0


def fixed(tokens: int) -> dict:
    return {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": 0}


def calls(run) -> collections.Counter:
    """The Python frames ("py", name) and C calls ("c", name) that ``run()`` makes."""
    counted: collections.Counter = collections.Counter()

    def profiler(frame, event, arg):
        if event == "call":
            counted["py", f"{frame.f_code.co_filename}:{frame.f_code.co_name}"] += 1
        elif event == "c_call":
            counted["c", getattr(arg, "__qualname__", repr(arg))] += 1

    sys.setprofile(profiler)
    try:
        run()
    finally:
        sys.setprofile(None)
    return counted


def per_step(counts: dict[int, collections.Counter]) -> collections.Counter:
    """The calls made per extra step: the difference between the two lengths over the extra steps."""
    grown = counts[LONG].copy()
    grown.subtract(counts[SHORT])
    return collections.Counter({key: n / (LONG - SHORT) for key, n in grown.items() if n})


def added(bare: collections.Counter, profiled: collections.Counter) -> dict[tuple[str, str], float]:
    """What profiling adds per step, call by call (what it saves is not counted against what it adds)."""
    return {key: n - bare.get(key, 0) for key, n in profiled.items() if n - bare.get(key, 0) > 0.05}


def generate_calls(model, inputs) -> dict[int, collections.Counter]:
    model.generate(**inputs, **fixed(SHORT))  # warm: first-call work is no step's
    return {n: calls(lambda n=n: model.generate(**inputs, **fixed(n))) for n in (SHORT, LONG)}


def test_profiling_a_generate_adds_no_python_level_call_per_decode_step():
    model, inputs = synthetic_model(prefill_ms=0, decode_ms=0), synthetic_prompt(2, 4)
    bare = per_step(generate_calls(model, inputs))
    with llmprof.profile(model, telemetry=False) as prof:
        profiled = per_step(generate_calls(model, inputs))
    # every step was recorded: a token mark and a forward span each, and the flags of both sequences
    raw = prof.records[-1]
    assert len(prof.records) == 3 and raw.tokens_per_sequence == [LONG, LONG]
    assert (
        raw.label.count(llmprof.Label.TOKEN) == LONG and raw.label.count(llmprof.Label.FORWARD_BEGIN) == LONG
    )
    assert (
        sum(n for (kind, _), n in bare.items() if kind == "py") > 20
    )  # the count sees generate()'s own steps
    extra = added(bare, profiled)
    assert sum(n for (kind, _), n in extra.items() if kind == "py") <= PY_BUDGET, extra
    assert sum(extra.values()) <= TOTAL_BUDGET, extra


def test_a_recorded_loop_costs_two_python_frames_and_two_c_calls_per_step():
    recorder = llmprof.Recorder()
    step = torch.zeros(2, dtype=torch.bool)

    def loop(n: int) -> None:
        with recorder.request(batch=2, max_steps=LONG):
            for _ in range(n):
                with recorder.forward():
                    pass
                recorder.token(finished=step)

    loop(SHORT)
    counts = {n: calls(lambda n=n: loop(n)) for n in (SHORT, LONG)}
    extra = per_step(counts)
    assert sum(n for (kind, _), n in extra.items() if kind == "py") <= 2, extra  # forward(), token()
    assert sum(extra.values()) <= 4, extra
    assert [r.tokens_per_sequence for r in recorder.records] == [[SHORT] * 2, [SHORT] * 2, [LONG] * 2]


def test_the_profilers_work_per_step_does_not_grow_with_the_generation():
    """No retained object per step: the garbage collector's tracked objects after a long profiled call are
    as many as after a short one."""
    import gc

    model, inputs = synthetic_model(prefill_ms=0, decode_ms=0), synthetic_prompt(1, 4)
    with llmprof.profile(model, telemetry=False) as prof:
        tracked = {}
        for n in (SHORT, 10 * LONG, SHORT, 10 * LONG):
            model.generate(**inputs, **fixed(n))
            gc.collect()
            tracked[n] = len(gc.get_objects())
        records = prof.records
    assert [r.tokens_per_sequence for r in records] == [[SHORT], [10 * LONG], [SHORT], [10 * LONG]]
    # the records themselves hold plain lists (not tracked per element); nothing else grows with the steps
    assert tracked[10 * LONG] - tracked[SHORT] < 200


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def peak_added(mode: str, batch: int, tokens: int) -> dict:
    """benchmarks/bench_memory.py's measurement: one generate() in a fresh process."""
    sys.path.insert(0, str(BENCHMARKS))
    from bench_memory import measured

    return measured(mode, batch, tokens)


@pytest.mark.slow
def test_a_profiled_generate_adds_no_more_peak_memory_than_a_bare_one():
    batch, tokens = 64, 2048
    bare, profiled = peak_added("bare", batch, tokens), peak_added("profiled", batch, tokens)
    assert profiled["tokens"] == [tokens] * batch and profiled["shape"] == bare["shape"] == [
        batch,
        8 + tokens,
    ]
    bare_mb, profiled_mb = bare["added_kib"] / 1024, profiled["added_kib"] / 1024
    assert profiled_mb <= max(1.5 * bare_mb, bare_mb + 64), (bare_mb, profiled_mb)
