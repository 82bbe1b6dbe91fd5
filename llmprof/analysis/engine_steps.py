"""An inference engine's own data in a run (vLLM): its steps as columns (one row per engine step, on the host
clock), their checks on load, their phases' durations and per-step summaries; and the check of a request's
``engine`` entry. numpy, no torch, no vLLM.

An engine step is scheduled (``begin_ns`` to ``scheduled_ns``), runs its forward (to ``forward_end_ns``),
samples (to ``sampled_ns``) and updates its requests' outputs (to ``end_ns``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmprof.analysis.fields import MAX_NS, check_int, check_number, fail, type_name
from llmprof.analysis.stats import Summary

TIMES = ("begin_ns", "scheduled_ns", "forward_end_ns", "sampled_ns", "end_ns")  # in this order within a step
COUNTS = ("requests", "prefill_tokens", "decode_tokens")
COLUMNS = (*TIMES, *COUNTS, "kv_usage", "warmup")
# a step's phases: (name, its start column, its end column); the step itself last
PHASES = (
    ("schedule", "begin_ns", "scheduled_ns"),
    ("forward", "scheduled_ns", "forward_end_ns"),
    ("sampling", "forward_end_ns", "sampled_ns"),
    ("output update", "sampled_ns", "end_ns"),
    ("step", "begin_ns", "end_ns"),
)
ENGINE_FIELDS = (
    "name",
    "request_id",
    "finish_reason",
)  # a request's engine entry (finish_reason may be null)
MAX_ENGINE_TEXT = 200
Z95 = 1.959964  # the standard normal's two-sided 95% quantile


def check_engine_steps(steps: Any, where: str = "engine_steps") -> None:
    """The step columns: exactly :data:`COLUMNS`, lists of one length; times and counts integers in range,
    each step's times nondecreasing in :data:`TIMES` order; ``kv_usage`` a number 0..1 or null; ``warmup``
    booleans. Raises RunFormatError naming the first field that is wrong."""
    if not isinstance(steps, dict):
        raise fail(where, f"an object is needed, not {type_name(steps)}")
    unknown = sorted(set(steps) - set(COLUMNS))
    if unknown:
        raise fail(where, f"unknown fields {unknown[:5]}")
    for name in COLUMNS:
        if name not in steps:
            raise fail(f"{where}.{name}", "missing")
        if not isinstance(steps[name], list):
            raise fail(f"{where}.{name}", f"a list is needed, not {type_name(steps[name])}")
        if len(steps[name]) != len(steps[COLUMNS[0]]):
            raise fail(
                f"{where}.{name}", f"{len(steps[name])} rows, not {len(steps[COLUMNS[0]])} as {COLUMNS[0]}"
            )
    for name in (*TIMES, *COUNTS):
        _check_int_column(steps[name], f"{where}.{name}")
    times = np.array([steps[name] for name in TIMES], dtype=np.int64).reshape(len(TIMES), -1)
    for k in range(1, len(TIMES)):
        bad = np.flatnonzero(times[k] < times[k - 1])
        if bad.size:
            raise fail(f"{where}.{TIMES[k]}[{bad[0]}]", f"earlier than its {TIMES[k - 1]}")
    for i, usage in enumerate(steps["kv_usage"]):
        if usage is not None:
            check_number(usage, f"{where}.kv_usage[{i}]", 0.0, 1.0)
    for i, warmup in enumerate(steps["warmup"]):
        if not isinstance(warmup, bool):
            raise fail(f"{where}.warmup[{i}]", f"true or false is needed, not {type_name(warmup)}")


def _check_int_column(column: list[Any], where: str) -> None:
    """Every value an integer within 0..MAX_NS (checked whole first; the first bad one named)."""
    if all(type(v) is int for v in column) and (not column or (min(column) >= 0 and max(column) <= MAX_NS)):
        return
    for i, v in enumerate(column):
        check_int(v, f"{where}[{i}]")


def check_engine(engine: Any, where: str) -> None:
    """A request's engine entry: an object of :data:`ENGINE_FIELDS` alone, ``name`` and ``request_id``
    strings, ``finish_reason`` a string or null, each of at most MAX_ENGINE_TEXT characters."""
    if not isinstance(engine, dict):
        raise fail(where, f"an object is needed, not {type_name(engine)}")
    unknown = sorted(set(engine) - set(ENGINE_FIELDS))
    if unknown:
        raise fail(where, f"unknown fields {unknown[:5]}")
    for name in ENGINE_FIELDS[:2]:
        if name not in engine:
            raise fail(f"{where}.{name}", "missing")
    for name, value in engine.items():
        if value is None and name == "finish_reason":
            continue
        if not isinstance(value, str):
            raise fail(f"{where}.{name}", f"a string is needed, not {type_name(value)}")
        if len(value) > MAX_ENGINE_TEXT:
            raise fail(f"{where}.{name}", f"{len(value)} characters, more than {MAX_ENGINE_TEXT}")


@dataclass
class EngineStepStats:
    """The measured steps of an engine (warm-ups left out): each phase's duration (s), the requests and tokens
    of a step, and the KV cache's usage (0..1, over the steps that report it), each summarized per step."""

    steps: int
    warmup_steps: int
    phases: dict[str, Summary]
    counts: dict[str, Summary]
    kv_usage: Summary | None


def step_durations(steps: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """Each phase's duration (ns, int64) per step, all steps (warm-ups too), in :data:`PHASES` order."""
    return {
        name: np.asarray(steps[end], dtype=np.int64) - np.asarray(steps[begin], dtype=np.int64)
        for name, begin, end in PHASES
    }


def engine_step_stats(steps: dict[str, list[Any]]) -> EngineStepStats:
    """The summaries of the measured steps of ``steps`` (a checked :data:`COLUMNS` table)."""
    measured = ~np.asarray(steps["warmup"], dtype=bool)
    durations = step_durations(steps)
    usage = [u for u, keep in zip(steps["kv_usage"], measured.tolist()) if keep and u is not None]
    return EngineStepStats(
        steps=int(measured.sum()),
        warmup_steps=int((~measured).sum()),
        phases={name: step_summary(d[measured] * 1e-9) for name, d in durations.items()},
        counts={name: step_summary(np.asarray(steps[name], dtype=float)[measured]) for name in COUNTS},
        kv_usage=step_summary(np.asarray(usage, dtype=float)) if usage else None,
    )


def step_summary(values: np.ndarray) -> Summary:
    """The :class:`~llmprof.analysis.stats.Summary` of many steps' values, in numpy: the same median,
    percentiles (linear) and sample deviation as :func:`~llmprof.analysis.stats.summarize`, but the median's
    95% interval from its order statistics (distribution-free; a bootstrap of 2000 resamples of 100k steps is
    too slow). Zeros for no value."""
    n = len(values)
    if not n:
        return Summary(0, *(0.0,) * 9)
    ordered = np.sort(values.astype(float))
    half = Z95 * math.sqrt(n) / 2
    low, high = max(math.floor(n / 2 - half), 1), min(math.ceil(n / 2 + half) + 1, n)  # 1-based ranks
    p50, p90, p99 = np.percentile(ordered, [50, 90, 99]).tolist()
    return Summary(
        n=n,
        median=p50,
        mean=float(ordered.mean()),
        stdev=float(ordered.std(ddof=1)) if n > 1 else 0.0,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        p90=p90,
        p99=p99,
        ci95_low=float(ordered[low - 1]),
        ci95_high=float(ordered[high - 1]),
    )
