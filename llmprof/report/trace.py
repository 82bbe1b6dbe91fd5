"""A run as a Chrome trace-event / Perfetto JSON document (opens in ui.perfetto.dev and chrome://tracing).

Every request of the run (warm-ups included) is drawn on the run's one clock: the host monotonic clock, with
device (CUDA event) times mapped onto it (docs/architecture.md, "Clock"). ``ts`` is in microseconds from the first
request's start. Layout:

- pid 1 "llmprof": tid 1 "requests" (one span per ``generate()`` call, its metrics in args), tid 2 "host"
  (host prep, forward launches, sampling, vision encoder from host stamps), tid 3 "device" (CUDA records only:
  the same spans from device times, plus the host gaps where the device waited), tid 4 "tokens" (one instant
  per step).
- with a kernel capture (``run --kernels``): the (first) profiled call as a request "kernel capture" on the threads
  above, tid 5 "operators" (its host operators, nested) and tid 10+N "kernels (device N)", each event with
  its llmprof step in args, on the same clock as the step spans.
- a model over several GPUs of one process (device_map): tid 50+L "stages (cuda:N)", each GPU's stage of every
  forward (from the moment the GPUs before it were done to the moment it was done too).
- pid 2 "telemetry": one counter track per sampled field, one series per device.
- pid 3 "engine" (an engine's steps, vLLM): a thread per phase of a step (schedule, forward, sampling, output
  update), a span per step, and counters per step: its requests and tokens, the KV cache's usage
  (:mod:`llmprof.report.trace_engine`).
- a run of several ranks (``run --tp`` under torchrun): pid 1 is rank 0; pid 100+R "rank R (host)" holds rank
  R's requests, host, device and tokens threads, its times put on rank 0's clock by its measured offset.

The bulk of a long run's events (its per-step spans and token instants) are built as columns
(:class:`~llmprof.report.trace_events.EventColumns`, by :mod:`llmprof.report.trace_requests`; the telemetry as
:class:`~llmprof.report.trace_events.Counters`, by :mod:`llmprof.report.trace_counters`), which the JSON writer
expands into events and the Perfetto writer encodes as they are. numpy and json: never imports torch or NVML.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import IO, Any

from llmprof.analysis.kernels import HOST
from llmprof.analysis.record import RawRequest
from llmprof.analysis.telemetry import THROTTLE_REASONS
from llmprof.report.trace_counters import COUNTERS, NOT_COUNTERS, THROTTLE_MASK, counter_events, round_4
from llmprof.report.trace_engine import engine_events
from llmprof.report.trace_events import (
    PID_RANKS,
    PID_RUN,
    PID_TELEMETRY,
    THREADS,
    TID_DEVICE,
    TID_KERNELS,
    TID_OPERATORS,
    TID_STAGES,
    Event,
    EventColumns,
    Item,
    metadata,
    span,
)
from llmprof.report.trace_requests import has_device_timeline, request_events, request_names, stage_threads
from llmprof.runfile import Run

__all__ = [  # the trace's own names, and its pieces' that callers have long read from here
    "COUNTERS",
    "HOST_BACKEND_NOTE",
    "NOT_COUNTERS",
    "THROTTLE_MASK",
    "TID_KERNELS",
    "TID_OPERATORS",
    "TID_STAGES",
    "build_trace",
    "render",
    "round_4",
    "trace_items",
    "trace_origin",
]

HOST_BACKEND_NOTE = "host backend: host spans are the compute"


def trace_origin(run: Run) -> int:
    """The trace's time zero (host clock, ns): the first request's start (of any rank, on rank 0's clock), or
    an earlier time if a mark falls before it (a mapped device time within the sync uncertainty, a malformed
    record's host stamp, a captured kernel, an engine's step), so that no event starts before zero; without any, the first
    telemetry sample, or 0."""
    timelines = [(run.records, 0)] + [(t.records, t.offset_ns) for t in (run.ranks or [])[1:]]
    marks = [ns for records, offset in timelines for ns in _earliest_marks(records, offset)]
    if run.kernels is not None and run.kernels.events["start_ns"]:
        marks.append(min(run.kernels.events["start_ns"]))
    if run.engine_steps is not None and run.engine_steps["begin_ns"]:
        marks.append(min(run.engine_steps["begin_ns"]))
    samples = ((run.telemetry or {}).get("samples") or {}).get("t_ns") or []
    return min(marks or [t for t in samples if isinstance(t, int)] or [0])


def _earliest_marks(records: list[RawRequest], offset: int) -> list[int]:
    """The times that may come first in ``records``, on rank 0's clock (``offset`` ns added): each record's
    first host stamp and every device time."""
    marks = []
    for raw in records:
        if raw.host_ns:
            marks.append(min(raw.host_ns) + offset)
        marks += [ns + offset for ns in raw.device_ns if ns is not None]
    return marks


def _kernel_events(run: Run, origin: int) -> tuple[list[Item], dict[int, str]]:
    """The kernel capture's request, operators and kernels, and the names of the threads they add."""
    capture = run.kernels
    if capture is None:
        return [], {}
    events: list[Item] = []
    if capture.request is not None:
        events += request_events(RawRequest.from_dict(capture.request), "kernel capture", origin)
    threads = {}
    e = capture.events
    for name, dev, step, start, dur, call in zip(
        e["name"], e["device"], e["step"], e["start_ns"], e["dur_ns"], capture.call_of_events()
    ):
        if call:  # the first captured call only: its request is the one drawn
            continue
        host = dev == HOST
        tid = TID_OPERATORS if host else TID_KERNELS + dev
        threads[tid] = "operators" if host else f"kernels (device {dev})"
        cat = "operator" if host else "kernel"
        events.append(span(capture.names[name], cat, tid, start, start + dur, origin, step=step))
    return events, threads


def _thread_metadata(with_device: bool, with_telemetry: bool, extra: dict[int, str]) -> list[Event]:
    """Names and order of the processes and threads (``extra``: more threads of the run's process)."""
    events = [
        metadata(PID_RUN, 0, "process_name", {"name": "llmprof"}),
        metadata(PID_RUN, 0, "process_sort_index", {"sort_index": 1}),
    ]
    for tid, name in {**THREADS, **extra}.items():
        if tid != TID_DEVICE or with_device:
            events.append(metadata(PID_RUN, tid, "thread_name", {"name": name}))
            events.append(metadata(PID_RUN, tid, "thread_sort_index", {"sort_index": tid}))
    if with_telemetry:
        events.append(metadata(PID_TELEMETRY, 0, "process_name", {"name": "telemetry"}))
        events.append(metadata(PID_TELEMETRY, 0, "process_sort_index", {"sort_index": 2}))
    return events


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _other_data(run: Run, origin: int, with_device: bool) -> dict[str, str]:
    """A summary of the run's configuration and of how to read the trace (string values, as viewers expect)."""
    warmups = sum(raw.warmup for raw in run.records)
    telemetry = run.telemetry or {}
    uncertainty = max((raw.sync_uncertainty_ns for raw in run.records if has_device_timeline(raw)), default=0)
    data = {
        "tool": "llmprof",
        "created": run.created,
        "interrupted": _text(run.interrupted),
        "clock": f"host monotonic clock, in us from {origin} ns (the first request's start)",
        "requests": f"{warmups} warm-up + {len(run.records) - warmups} measured",
        "backend": ", ".join(sorted({raw.backend for raw in run.records})) or "none",
        "device thread": (
            f"CUDA event times mapped onto the host clock (sync uncertainty <= {uncertainty / 1000:.1f} us)"
            if with_device
            else HOST_BACKEND_NOTE
        ),
        "telemetry": str(telemetry.get("kind", "off"))
        + (f" ({telemetry['reason']})" if telemetry.get("reason") else ""),
    }
    if "clock_event_reasons" in (telemetry.get("samples") or {}):
        data["clock throttle bits"] = ", ".join(f"{bit:#x} {name}" for bit, name in THROTTLE_REASONS.items())
    data.update({f"config.{key}": _text(value) for key, value in run.config.items()})
    return data


def _rank_events(run: Run, origin: int, with_device: bool) -> list[Item]:
    """Every rank but the first as a process of its own, its requests on rank 0's clock."""
    events = []
    for timeline in (run.ranks or [])[1:]:
        pid = PID_RANKS + timeline.rank
        name = f"rank {timeline.rank} ({timeline.hostname})"
        events += [
            metadata(pid, 0, "process_name", {"name": name}),
            metadata(pid, 0, "process_sort_index", {"sort_index": 1}),
        ]
        for tid, thread in THREADS.items():
            if tid != TID_DEVICE or with_device:
                events.append(metadata(pid, tid, "thread_name", {"name": thread}))
        shifted = origin - timeline.offset_ns  # its stamps + offset = rank 0's clock
        for raw, request in zip(timeline.records, request_names(timeline.records)):
            for item in request_events(raw, request, shifted) if raw.label else []:
                events.append(
                    replace(item, pid=pid) if isinstance(item, EventColumns) else {**item, "pid": pid}
                )
    return events


def trace_items(run: Run) -> tuple[list[Item], dict[str, str]]:
    """The trace of ``run`` as events and columns of events, in the JSON trace's order, and its
    ``otherData`` (see the module docstring for the layout)."""
    origin = trace_origin(run)
    with_device = any(has_device_timeline(raw) for raw in run.records)
    counters = counter_events(run.telemetry, origin)
    kernels, threads = _kernel_events(run, origin)
    items: list[Item] = []
    items += _thread_metadata(with_device, len(counters) > 0, {**threads, **stage_threads(run.records)})
    if run.ranks and len(run.ranks) > 1:
        items[0]["args"]["name"] = f"llmprof: rank 0 ({run.ranks[0].hostname})"
    for raw, name in zip(run.records, request_names(run.records)):
        if raw.label:
            items += request_events(raw, name, origin, run.request_metrics)
    items += _rank_events(run, origin, with_device)
    items += engine_events(run.engine_steps, origin)
    return items + kernels + ([counters] if len(counters) else []), _other_data(run, origin, with_device)


def build_trace(run: Run) -> dict[str, Any]:
    """The trace-event JSON object of ``run`` (see the module docstring for the layout)."""
    items, other = trace_items(run)
    events = [e for item in items for e in ((item,) if isinstance(item, dict) else item.events())]
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def render(run: Run, out: IO[str]) -> None:
    """``build_trace(run)`` as JSON text, ready to save as ``*.json`` (or ``*.trace.json``)."""
    out.write(json.dumps(build_trace(run), separators=(",", ":"), allow_nan=False))
