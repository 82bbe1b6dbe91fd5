"""An engine's steps (vLLM) in the trace (:mod:`llmprof.report.trace`): pid 3 "engine", one thread per phase of
a step (schedule, forward, sampling, output update: a span per step, its step number in args) and counters per
step (its requests and prefill/decode tokens; the KV cache's usage where reported). numpy: never imports torch
or vLLM."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmprof.analysis.engine_steps import PHASES
from llmprof.report.trace_events import PID_ENGINE, TID_COUNTERS, Event, EventColumns, Item, metadata

STEP_PHASES = [phase for phase in PHASES if phase[0] != "step"]  # the step itself is the sum of its phases
COUNTS = {"requests": "requests", "prefill_tokens": "prefill tokens", "decode_tokens": "decode tokens"}


def engine_events(steps: dict[str, list[Any]] | None, origin: int) -> list[Item]:
    """The engine process of a run with an engine's steps (every step, warm-ups too), from ``origin`` (ns);
    nothing without."""
    if steps is None or not steps["begin_ns"]:
        return []
    items: list[Item] = [
        metadata(PID_ENGINE, 0, "process_name", {"name": "engine"}),
        metadata(PID_ENGINE, 0, "process_sort_index", {"sort_index": PID_ENGINE}),
    ]
    numbers = np.arange(len(steps["begin_ns"]), dtype=np.int64)
    for tid, (name, begin, end) in enumerate(STEP_PHASES, 1):
        items.append(metadata(PID_ENGINE, tid, "thread_name", {"name": name}))
        items.append(metadata(PID_ENGINE, tid, "thread_sort_index", {"sort_index": tid}))
        start = np.asarray(steps[begin], dtype=np.int64) - origin
        stop = np.asarray(steps[end], dtype=np.int64) - origin
        items.append(
            EventColumns(
                "X", "engine", tid, [name] * len(numbers), start, stop, {"step": numbers}, PID_ENGINE
            )
        )
    return items + _counters(steps, origin)


def _counters(steps: dict[str, list[Any]], origin: int) -> list[Event]:
    """Per step, at its start: its requests and tokens, and the KV cache's usage (%) where reported."""
    events = []
    columns = [steps[column] for column in COUNTS]
    for begin, usage, *counts in zip(steps["begin_ns"], steps["kv_usage"], *columns):
        ts = (begin - origin) / 1000
        args = dict(zip(COUNTS.values(), counts))
        events.append(_counter("engine step", ts, args))
        if usage is not None:
            events.append(_counter("KV cache used (%)", ts, {"engine": round(usage * 100, 4)}))
    return events


def _counter(name: str, ts: float, args: dict[str, Any]) -> Event:
    return {
        "name": name,
        "cat": "engine",
        "ph": "C",
        "ts": ts,
        "pid": PID_ENGINE,
        "tid": TID_COUNTERS,
        "args": args,
    }
