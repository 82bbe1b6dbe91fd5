"""Metrics from hand-built timelines whose answers are known exactly."""

import pytest
from timelines import host_marks as steady
from timelines import record

from llmprof.analysis.metrics import compute_request
from llmprof.analysis.record import Label


def test_single_sequence_metrics_match_definitions():
    m = compute_request(record(steady(5), [5]))
    assert m.ttft == pytest.approx(0.043)  # prep 2 + prefill 40 + sample 1
    assert m.tpot == pytest.approx(0.0165)  # gap 0.5 + forward 15 + sample 1
    assert m.itl == pytest.approx([0.0165] * 4)
    assert m.latency == pytest.approx(0.043 + 4 * 0.0165 + 0.003)
    assert m.latency_to_last_token == pytest.approx(0.043 + 4 * 0.0165)
    assert m.tps == pytest.approx(5 / m.latency)
    assert m.decode_tps == pytest.approx(4 / (4 * 0.0165))
    assert m.prefill_tps == pytest.approx(10 / 0.043)
    b = m.breakdown
    assert (b.host_prep, b.prefill, b.first_sample) == pytest.approx((0.002, 0.040, 0.001))
    assert (b.decode_forward, b.sampling, b.host_gap) == pytest.approx((0.015, 0.001, 0.0005))
    assert b.host_bound_share is None  # host backend: no device queue


def test_ragged_batch_uses_each_sequence_own_last_token():
    m = compute_request(record(steady(8), [1, 3, 5, 8], prompt=4))
    assert m.output_tokens == [1, 3, 5, 8]
    assert m.tpot_per_sequence[0] is None
    assert m.tpot_per_sequence[1:] == pytest.approx([0.0165] * 3)
    assert m.tpot == pytest.approx(0.0165)
    assert len(m.itl) == 7
    assert m.tps == pytest.approx(17 / m.latency)
    assert m.decode_tps == pytest.approx((0 + 2 + 4 + 7) / (7 * 0.0165))
    assert m.prefill_tps == pytest.approx(4 * 4 / 0.043)


def test_single_token_request_has_no_tpot():
    m = compute_request(record(steady(1), [1]))
    assert m.tpot is None and m.decode_tps is None and m.itl == []
    assert m.ttft == pytest.approx(0.043)


def test_device_times_are_used_and_host_bound_steps_detected():
    # Device: every event executes 5 ms after its host record, except the step-3 forward which
    # finds an idle device (executes at its record time): exactly one of three decode steps is host-bound.
    marks = []
    for label, step, host in steady(4):
        if label in (Label.REQUEST_START, Label.REQUEST_END):
            marks.append((label, step, host))
        else:
            delay = 0.0 if (label == Label.FORWARD_BEGIN and step == 2) else 5.0
            marks.append((label, step, host, host + delay))
    m = compute_request(record(marks, [4], backend="cuda", uncertainty=2_000))
    assert m.ttft == pytest.approx(0.048)  # T_1 is a device time: 5 ms later than its host record
    assert m.breakdown.step_host_bound == [False, True, False]
    assert m.breakdown.host_bound_share == pytest.approx(1 / 3)


def test_vision_inside_prefill_is_split_out():
    marks = [
        (Label.REQUEST_START, 0, 0.0),
        (Label.FORWARD_BEGIN, 0, 1.0),
        (Label.VISION_BEGIN, 0, 2.0),
        (Label.VISION_END, 0, 12.0),
        (Label.FORWARD_END, 0, 31.0),
        (Label.TOKEN, 1, 32.0),
        (Label.REQUEST_END, 1, 33.0),
    ]
    b = compute_request(record(marks, [1])).breakdown
    assert (b.host_prep, b.vision, b.prefill, b.first_sample) == pytest.approx((0.001, 0.010, 0.020, 0.001))


def test_vision_before_prefill_counts_outside_host_prep():
    marks = [
        (Label.REQUEST_START, 0, 0.0),
        (Label.VISION_BEGIN, 0, 2.0),
        (Label.VISION_END, 0, 12.0),
        (Label.FORWARD_BEGIN, 0, 13.0),
        (Label.FORWARD_END, 0, 33.0),
        (Label.TOKEN, 1, 34.0),
        (Label.REQUEST_END, 1, 35.0),
    ]
    b = compute_request(record(marks, [1])).breakdown
    assert (b.host_prep, b.vision, b.prefill, b.first_sample) == pytest.approx((0.003, 0.010, 0.020, 0.001))


def test_missing_forward_marks_leave_parts_unknown_not_wrong():
    marks = [
        (label, step, t)
        for label, step, t in steady(3)
        if label not in (Label.FORWARD_BEGIN, Label.FORWARD_END)
    ]
    m = compute_request(record(marks, [3]))
    assert m.ttft == pytest.approx(0.043)
    assert m.breakdown.prefill is None and m.breakdown.host_prep is None
    assert m.breakdown.decode_forward is None


@pytest.mark.parametrize(
    "drop, message",
    [(Label.TOKEN, "token marks"), (Label.REQUEST_END, "start or end")],
)
def test_incomplete_timeline_is_an_error(drop, message):
    marks = [m for m in steady(3) if m[0] != drop]
    with pytest.raises(ValueError, match=message):
        compute_request(record(marks, [3]))


def test_no_token_is_an_error():
    with pytest.raises(ValueError, match="no token"):
        compute_request(record(steady(1), [0]))


def _pairs_by_definition(labels, steps, begin, end):
    """MarkIndex.pairs as docs/architecture.md defines it, one mark at a time."""
    opened, out = {}, []
    for i, (label, step) in enumerate(zip(labels, steps)):
        if label == begin:
            opened.setdefault(step, i)
        elif label == end and step in opened:
            out.append((step, opened.pop(step), i))
    return out


@pytest.mark.parametrize("regular", [True, False], ids=["one begin and end a step", "repeated and stray"])
def test_the_mark_index_pairs_and_ends_are_the_one_mark_at_a_time_definitions(regular):
    """The vectorized index against the loop: spans (a step with several begins, ends before begins, stray
    ends), and per step the first and last mark of a label in order of appearance."""
    import random

    from llmprof.analysis.record import MarkIndex

    rng = random.Random(7)
    for _ in range(2000):
        if regular:  # each step begins and ends at most once, in any order
            marks = [(1, s) for s in rng.sample(range(12), rng.randint(0, 10))]
            marks += [(2, s) for s in rng.sample(range(12), rng.randint(0, 10))]
        else:
            marks = [(rng.choice([1, 2, 3]), rng.randint(0, 5)) for _ in range(rng.randint(0, 30))]
        rng.shuffle(marks)
        labels, steps = [m[0] for m in marks], [m[1] for m in marks]
        index = MarkIndex(labels, steps)
        assert index.pairs(1, 2) == _pairs_by_definition(labels, steps, 1, 2)
        first, last = {}, {}
        for i, (label, step) in enumerate(marks):
            if label == 1:
                first.setdefault(step, i)
                last[step] = i
        assert list(index.first(1).items()) == list(first.items())
        assert list(index.last(1).items()) == list(last.items())
