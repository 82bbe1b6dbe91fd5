"""An inference engine's own data in a run (vLLM): its steps as columns (one row per engine step, on the host
clock), their checks on load, their phases' durations and per-step summaries; the check of a request's
``engine`` entry; and what the engine reports of its requests beside llmprof's figures. numpy, no torch, no vLLM.

An engine step is scheduled (``begin_ns`` to ``scheduled_ns``), runs its forward (to ``forward_end_ns``),
samples (to ``sampled_ns``) and updates its requests' outputs (to ``end_ns``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmprof.analysis.fields import MAX_NS, check_int, check_number, fail, type_name
from llmprof.analysis.metrics import NS, RequestMetrics
from llmprof.analysis.record import RawRequest
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
# a request's engine entry: its texts (finish_reason may be null), and what the engine itself reports of it
ENGINE_FIELDS = ("name", "request_id", "finish_reason", "reported")
# the engine's own figures of a request (vLLM's RequestOutput.metrics): its TTFT (s) and its first and last
# token's stamps on llmprof's clock (ns)
REPORTED_FIELDS = ("ttft_s", "first_token_ns", "last_token_ns")
MAX_REPORTED_S = 1e6
MAX_ENGINE_TEXT = 200
Z95 = 1.959964  # the standard normal's two-sided 95% quantile


def check_engine_steps(steps: Any, where: str = "engine_steps") -> None:
    """The step columns: exactly :data:`COLUMNS`, lists of one length; times and counts integers in range,
    each step's times nondecreasing in :data:`TIMES` order; ``kv_usage`` a number 0..1 or null; ``warmup``
    booleans. Raises RunFormatError naming the first field that is wrong."""
    _check_object(steps, where, COLUMNS, COLUMNS)
    for name in COLUMNS:
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


def _check_object(value: Any, where: str, fields: tuple[str, ...], required: tuple[str, ...]) -> None:
    """``value`` an object of ``fields`` alone, with every one of ``required``."""
    if not isinstance(value, dict):
        raise fail(where, f"an object is needed, not {type_name(value)}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise fail(where, f"unknown fields {unknown[:5]}")
    for name in required:
        if name not in value:
            raise fail(f"{where}.{name}", "missing")


def _check_int_column(column: list[Any], where: str) -> None:
    """Every value an integer within 0..MAX_NS (checked whole first; the first bad one named)."""
    if all(type(v) is int for v in column) and (not column or (min(column) >= 0 and max(column) <= MAX_NS)):
        return
    for i, v in enumerate(column):
        check_int(v, f"{where}[{i}]")


def check_engine(engine: Any, where: str) -> None:
    """A request's engine entry: an object of :data:`ENGINE_FIELDS` alone, ``name`` and ``request_id``
    strings, ``finish_reason`` a string or null, each of at most MAX_ENGINE_TEXT characters; ``reported``, where
    present, checked by :func:`check_reported`."""
    _check_object(engine, where, ENGINE_FIELDS, ENGINE_FIELDS[:2])
    for name in ENGINE_FIELDS[:3]:
        value = engine.get(name)  # name and request_id are there; finish_reason may be missing or null
        if value is None and name == "finish_reason":
            continue
        if not isinstance(value, str):
            raise fail(f"{where}.{name}", f"a string is needed, not {type_name(value)}")
        if len(value) > MAX_ENGINE_TEXT:
            raise fail(f"{where}.{name}", f"{len(value)} characters, more than {MAX_ENGINE_TEXT}")
    if "reported" in engine:
        check_reported(engine["reported"], f"{where}.reported")


def check_reported(reported: Any, where: str) -> None:
    """What an engine reports of a request: an object of exactly :data:`REPORTED_FIELDS`, ``ttft_s`` a number
    0..MAX_REPORTED_S, the two stamps integers in range, the last no earlier than the first."""
    _check_object(reported, where, REPORTED_FIELDS, REPORTED_FIELDS)
    check_number(reported["ttft_s"], f"{where}.ttft_s", 0.0, MAX_REPORTED_S)
    first = check_int(reported["first_token_ns"], f"{where}.first_token_ns")
    if check_int(reported["last_token_ns"], f"{where}.last_token_ns") < first:
        raise fail(f"{where}.last_token_ns", "earlier than its first_token_ns")


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


@dataclass
class ReportedAccounting:
    """An engine's own figures of the measured requests that report them (``engine["reported"]``) beside
    llmprof's, in seconds, a value per request: each one's TTFT, and how long after llmprof's T_1 and last T_k
    the engine stamped the first and last token (negative: llmprof's time is the later, which should never be)."""

    requests: int  # the measured requests, those without the engine's figures too
    ttft: list[float]
    reported_ttft: list[float]
    first_token_after: list[float]
    last_token_after: list[float]


def reported_accounting(
    records: list[RawRequest], metrics: list[RequestMetrics]
) -> ReportedAccounting | None:
    """The :class:`ReportedAccounting` of ``records`` (measured, with their ``metrics`` in order); None when
    none reports the engine's figures."""
    accounting = ReportedAccounting(len(records), [], [], [], [])
    for raw, m in zip(records, metrics):
        reported = (raw.engine or {}).get("reported")
        if reported is None:
            continue
        start = raw.window[0]
        accounting.ttft.append(m.ttft)
        accounting.reported_ttft.append(reported["ttft_s"])
        accounting.first_token_after.append((reported["first_token_ns"] - start) * NS - m.ttft)
        accounting.last_token_after.append((reported["last_token_ns"] - start) * NS - m.latency_to_last_token)
    return accounting if accounting.ttft else None
