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
- a run of several ranks (``run --tp`` under torchrun): pid 1 is rank 0; pid 100+R "rank R (host)" holds rank
  R's requests, host, device and tokens threads, its times put on rank 0's clock by its measured offset.

The bulk of a long run's events (its per-step spans and token instants) are built as columns (:class:`Batch`),
which the JSON writer expands into events and the Perfetto writer encodes as they are. numpy and json: never
imports torch or NVML.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from dataclasses import field as default
from typing import IO, Any

import numpy as np

from llmprof.analysis.devices import forward_stages
from llmprof.analysis.kernels import HOST
from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.record import Label, RawRequest, at_steps
from llmprof.analysis.registry import BY_NAME
from llmprof.analysis.telemetry import THROTTLE_REASONS
from llmprof.runfile import Run

PID_RUN, PID_TELEMETRY, PID_RANKS = 1, 2, 100  # rank R > 0: PID_RANKS + R
TID_REQUESTS, TID_HOST, TID_DEVICE, TID_TOKENS = 1, 2, 3, 4
TID_OPERATORS, TID_KERNELS = 5, 10  # kernels of device N: TID_KERNELS + N
TID_STAGES = 50  # a device_map model: the stages of its L-th GPU on TID_STAGES + L
TID_COUNTERS = 0
THREADS = {TID_REQUESTS: "requests", TID_HOST: "host", TID_DEVICE: "device", TID_TOKENS: "tokens"}
HOST_BACKEND_NOTE = "host backend: host spans are the compute"
THROTTLE_MASK = sum(THROTTLE_REASONS)

# sampled field -> (counter name, scale to the shown unit)
COUNTERS: dict[str, tuple[str, float]] = {
    "gpu_util": ("GPU util (%)", 1.0),
    "mem_util": ("memory bandwidth util (%)", 1.0),
    "mem_used_bytes": ("memory used (GiB)", 1 / 2**30),
    "sm_clock_mhz": ("SM clock (MHz)", 1.0),
    "mem_clock_mhz": ("memory clock (MHz)", 1.0),
    "power_w": ("power (W)", 1.0),
    "temperature_c": ("temperature (C)", 1.0),
    "clock_event_reasons": ("clock throttle reasons (bitmask)", 1.0),
    "cpu_percent": ("CPU (%)", 1.0),
    "rss_bytes": ("RSS (MiB)", 1 / 2**20),
}
NOT_COUNTERS = {"t_ns", "device"}
REQUEST_ARGS = ("ttft", "tpot", "latency", "tps")  # the four numbers, in each request span's args
ARG_UNITS = {"s": ("ms", 1e3), "tok/s": ("tokens/s", 1.0)}  # unit -> (as the args name it, scale)

Event = dict[str, Any]


# -- event constructors ------------------------------------------------------------------------------------
def _us(ns: int, origin: int) -> float:
    """A host-clock time in nanoseconds as trace microseconds from ``origin`` (an integer over 1000 is
    already the double nearest its 3-decimal value: no rounding needed)."""
    return (ns - origin) / 1000


def _span(name: str, cat: str, tid: int, start: int, end: int, origin: int, **args: Any) -> Event:
    """A complete event ("X") from ``start`` to ``end`` (ns); a reversed span is clipped to zero length."""
    event = {
        "name": name,
        "cat": cat,
        "ph": "X",
        "ts": _us(start, origin),
        "dur": max(end - start, 0) / 1000,
        "pid": PID_RUN,
        "tid": tid,
    }
    if args:
        event["args"] = args
    return event


def _metadata(pid: int, tid: int, name: str, args: dict[str, Any]) -> Event:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


@dataclass
class Batch:
    """Many events of one kind on one thread as columns: spans ("X", from ``start`` to ``end``; a reversed one
    is clipped to zero length) or instants ("i", at ``start``), in nanoseconds from the trace's origin; a name
    per event and at most one argument (an int column)."""

    ph: str
    cat: str
    tid: int
    names: list[str]
    start: np.ndarray
    end: np.ndarray | None = None
    args: dict[str, np.ndarray] = default(default_factory=dict)
    pid: int = PID_RUN

    def __len__(self) -> int:
        return len(self.names)

    def events(self) -> list[Event]:
        """The batch as trace events (the same as one ``_span`` or instant at a time)."""
        cat, pid, tid = self.cat, self.pid, self.tid
        ts = (self.start / 1000).tolist()
        ((key, column),) = self.args.items() if self.args else (("", np.zeros(len(self), dtype=np.int64)),)
        args = [{key: v} for v in column.tolist()]
        if self.ph == "i":
            return [
                {"name": n, "cat": cat, "ph": "i", "s": "t", "ts": t, "pid": pid, "tid": tid, "args": a}
                for n, t, a in zip(self.names, ts, args)
            ]
        assert self.end is not None
        dur = (np.maximum(self.end - self.start, 0) / 1000).tolist()
        events = [
            {"name": n, "cat": cat, "ph": "X", "ts": t, "dur": d, "pid": pid, "tid": tid}
            for n, t, d in zip(self.names, ts, dur)
        ]
        if self.args:
            for event, a in zip(events, args):
                event["args"] = a
        return events


@dataclass
class Counters:
    """The telemetry as counter values, one row each, in the JSON trace's order (by time, then field, then
    device): ``ts`` in nanoseconds from the trace's origin, the counter's name, its series (the device) and
    its value."""

    ts: np.ndarray
    names: list[str]
    series: list[str]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def events(self) -> list[Event]:
        """One counter event per sample time and counter, one arg per series."""
        events: list[Event] = []
        last = None
        for t, name, series, value in zip(self.ts.tolist(), self.names, self.series, self.values.tolist()):
            if (t, name) != last:
                last, args = (t, name), {}
                events.append(
                    {
                        "name": name,
                        "cat": "telemetry",
                        "ph": "C",
                        "ts": t / 1000,
                        "pid": PID_TELEMETRY,
                        "tid": TID_COUNTERS,
                        "args": args,
                    }
                )
            args[series] = value
        return events


Item = Event | Batch | Counters  # what the builders below return: single events, and columns of many


# -- one request -------------------------------------------------------------------------------------------
class _Marks:
    """The marks of one request on one view of the clock (host stamps, or device times where present), read
    through the record's index, as nanoseconds from the trace's origin."""

    def __init__(self, raw: RawRequest, device: bool, origin: int):
        self.index = raw.marks
        self.times = np.asarray(raw.times if device else raw.host_ns, dtype=np.int64) - origin

    def pairs(self, begin: Label, end: Label) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, begins, ends)`` of the spans: a begin mark closed by the next end mark of the same step."""
        steps, b, e = self.index.pair_positions(begin, end)
        return steps, self.times[b], self.times[e]

    def first(self, label: Label) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, times)``: per step, the first mark with ``label``."""
        steps, at = self.index.first_positions(label)
        return steps, self.times[at]

    def last(self, label: Label) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, times)``: per step, the last mark with ``label``."""
        steps, at = self.index.last_positions(label)
        return steps, self.times[at]


def _request_args(raw: RawRequest, measure: Callable[[RawRequest], RequestMetrics]) -> dict[str, Any]:
    """The request's metrics (by ``measure``) for its span's args (or why they cannot be computed)."""
    args: dict[str, Any] = {"tokens per sequence": list(raw.tokens_per_sequence), "backend": raw.backend}
    if raw.warnings:
        args["warnings"] = list(raw.warnings)
    try:
        m = measure(raw)
    except (ValueError, ZeroDivisionError) as exc:
        return {**args, "error": str(exc) or type(exc).__name__}
    for name in REQUEST_ARGS:
        metric = BY_NAME[name]
        unit, scale = ARG_UNITS.get(metric.unit, (metric.unit, 1.0))
        value = metric.get(m)
        args[f"{metric.brief} ({unit})"] = _finite(None if value is None else value * scale)
    return args


def _compute_spans(marks: _Marks, tid: int) -> list[Batch]:
    """Forward ("prefill", "decode k": the forward producing token k), sampling and vision encoder spans."""
    _, begin, end = marks.pairs(Label.VISION_BEGIN, Label.VISION_END)
    batches = [Batch("X", "vision", tid, ["vision encoder"] * len(begin), begin, end)]
    steps, begin, end = marks.pairs(Label.FORWARD_BEGIN, Label.FORWARD_END)
    names = ["prefill" if step == 0 else f"decode {step + 1}" for step in steps.tolist()]
    batches.append(Batch("X", "forward", tid, names, begin, end, {"step": steps}))
    steps, end = marks.last(Label.FORWARD_END)
    sampled, token = at_steps(*marks.first(Label.TOKEN), steps + 1)
    batches.append(_spans_to_token("sampling", tid, steps, sampled, end, token))
    return batches


def _spans_to_token(
    name: str, tid: int, steps: np.ndarray, kept: np.ndarray, start: np.ndarray, end: np.ndarray
) -> Batch:
    """Spans ``name`` (its category too) of the steps ``kept`` says, each with the token it leads to."""
    n = int(kept.sum())
    return Batch("X", name, tid, [name] * n, start[kept], end[kept], {"token": steps[kept] + 1})


def _host_spans(raw: RawRequest, marks: _Marks, origin: int) -> list[Item]:
    """The "host" thread: host prep (start to the first forward launch) and the spans between host stamps."""
    items: list[Item] = list(_compute_spans(marks, TID_HOST))
    _, launches = marks.first(Label.FORWARD_BEGIN)
    if len(launches):
        start, _ = raw.window
        items.insert(0, _span("host prep", "host", TID_HOST, start, int(launches.min()) + origin, origin))
    return items


def _device_spans(marks: _Marks) -> list[Batch]:
    """The "device" thread: the spans between device times, plus each "host gap" (token k-1 to forward k)."""
    batches = _compute_spans(marks, TID_DEVICE)
    steps, launches = marks.first(Label.FORWARD_BEGIN)
    decoding = steps >= 1
    steps, launches = steps[decoding], launches[decoding]
    found, token = at_steps(*marks.first(Label.TOKEN), steps)
    batches.append(_spans_to_token("host gap", TID_DEVICE, steps, found, token, launches))
    return batches


def _token_instants(raw: RawRequest, marks: _Marks) -> Batch:
    """The "tokens" thread: "token k" at T_k, with the number of sequences still generating at that step."""
    steps = np.arange(1, max(raw.tokens_per_sequence, default=0) + 1)
    found, times = at_steps(*marks.first(Label.TOKEN), steps)
    steps = steps[found]
    lengths = np.sort(np.asarray(raw.tokens_per_sequence, dtype=np.int64))
    generating = len(lengths) - np.searchsorted(lengths, steps, side="left")
    names = [f"token {k}" for k in steps.tolist()]
    return Batch("i", "token", TID_TOKENS, names, times[found], None, {"sequences generating": generating})


def has_device_timeline(raw: RawRequest) -> bool:
    """Whether a record carries device (CUDA event) times to draw a "device" thread from."""
    return raw.backend == "cuda" and any(d is not None for d in raw.device_ns)


def _request_events(
    raw: RawRequest, name: str, origin: int, measure: Callable[[RawRequest], RequestMetrics] = compute_request
) -> list[Item]:
    """Every event of one request on the "llmprof" process (its metrics by ``measure``)."""
    start, end = raw.window
    cat = "warm-up" if raw.warmup else "request"
    items: list[Item] = [_span(name, cat, TID_REQUESTS, start, end, origin, **_request_args(raw, measure))]
    host = _Marks(raw, device=False, origin=origin)
    device = _Marks(raw, device=True, origin=origin) if any(d is not None for d in raw.device_ns) else host
    items += _host_spans(raw, host, origin)
    if has_device_timeline(raw):
        items += _device_spans(device)
    items += _stage_spans(raw, origin)
    items.append(_token_instants(raw, device))
    return [i for i in items if not isinstance(i, Batch) or len(i)]


def _stage_spans(raw: RawRequest, origin: int) -> list[Batch]:
    """A device_map model: each GPU's stage of every forward, on its own thread."""
    forwards = forward_stages(raw)
    steps = np.array([step for step, _, _ in forwards], dtype=np.int64)
    done = np.array([begin for _, begin, _ in forwards], dtype=np.int64) - origin
    batches = []
    for lane, device in enumerate(raw.device_forward_ends or ()):
        reached = done + np.array([stages[lane] for _, _, stages in forwards], dtype=np.int64)
        names = [f"{device} stage"] * len(steps)
        batches.append(Batch("X", "stage", TID_STAGES + lane, names, done, reached, {"step": steps}))
        done = reached
    return batches


def _stage_threads(records: list[RawRequest]) -> dict[int, str]:
    devices = next((list(r.device_forward_ends) for r in records if r.device_forward_ends), [])
    return {TID_STAGES + lane: f"stages ({device})" for lane, device in enumerate(devices)}


def _request_names(records: list[RawRequest]) -> list[str]:
    """ "warm-up N" and "request N", each numbered from 1 in run order."""
    counts = {True: 0, False: 0}
    names = []
    for raw in records:
        counts[raw.warmup] += 1
        names.append(f"{'warm-up' if raw.warmup else 'request'} {counts[raw.warmup]}")
    return names


# -- telemetry ---------------------------------------------------------------------------------------------
def round_4(values: np.ndarray) -> np.ndarray:
    """``round(v, 4)`` of each value, exactly as Python rounds (the double nearest the value rounded half-even
    to 4 decimals): ``rint(v * 1e4) / 1e4`` wherever ``v * 1e4`` is clearly off a half (its rounding error
    cannot move it across), Python's own ``round`` for the few that are not."""
    scaled = values * 1e4
    off_half = np.abs(scaled - np.floor(scaled) - 0.5)
    size = np.abs(scaled)
    clear = (off_half > 1e-9 * np.maximum(size, 1.0)) & (size < 2.0**50)  # its error: under 2**-53 of it
    out = np.rint(scaled) / 1e4
    unclear = np.flatnonzero(~clear & np.isfinite(values))
    out[unclear] = [round(v, 4) for v in values[unclear].tolist()]
    return out


def _counter_column(field: str, column: list[Any], n: int) -> np.ndarray:
    """``n`` samples of a field in the counter's unit, rounded as the trace rounds (NaN for a missing,
    non-numeric or non-finite one)."""
    kept = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in column[:n]]
    kept += [math.nan] * (n - len(kept))
    if field == "clock_event_reasons":  # the idle and application-clock bits are not throttling
        kept = [float(int(v) & THROTTLE_MASK) if math.isfinite(v) else math.nan for v in kept]
    values = np.array(kept, dtype=np.float64) * COUNTERS.get(field, (field, 1.0))[1]
    finite = np.isfinite(values)
    return np.where(finite, round_4(np.where(finite, values, 0.0)), math.nan)


def _counter_events(telemetry: dict[str, Any] | None, origin: int) -> Counters:
    """The telemetry's samples as counters: per sample time and field, a value per device.

    Samples taken before ``origin`` are dropped, as Perfetto rejects negative timestamps: only the sampler's
    first probe precedes the first request, and the next one follows within an interval. Of two samples of
    one device, field and time, the later one's value is kept, in the earlier one's place.
    """
    samples = (telemetry or {}).get("samples") or {}
    times = samples.get("t_ns") or []
    n = len(times)
    labels = [str(d) for d in (samples.get("device") or [])[:n]]
    labels += ["0"] * (n - len(labels))
    codes: dict[str, int] = {}
    device = np.array([codes.setdefault(label, len(codes)) for label in labels], dtype=np.int64)
    fields = [f for f in COUNTERS if f in samples] + [
        f for f in samples if f not in COUNTERS.keys() | NOT_COUNTERS
    ]
    valid = np.array([isinstance(t, int) and t >= origin for t in times], dtype=bool)
    t_ns = np.array([t if ok else 0 for t, ok in zip(times, valid.tolist())], dtype=np.int64)
    i, k, v = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for number, field in enumerate(fields):
        column = _counter_column(field, samples[field], n)
        at = np.flatnonzero(valid & ~np.isnan(column))
        i.append(at)
        k.append(np.full(len(at), number))
        v.append(column[at])
    rows, field_of, values = np.concatenate(i), np.concatenate(k), np.concatenate(v)
    t, d = t_ns[rows], device[rows]
    same = np.lexsort((rows, d, field_of, t))  # the samples of one (time, field, device) together, in order
    t, field_of, d, rows, values = t[same], field_of[same], d[same], rows[same], values[same]
    new = np.ones(len(t), dtype=bool)
    new[1:] = (t[1:] != t[:-1]) | (field_of[1:] != field_of[:-1]) | (d[1:] != d[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(t))[: len(first)] - 1
    t, field_of, d, rows, values = t[first], field_of[first], d[first], rows[first], values[last]
    order = np.lexsort((rows, field_of, t))  # by time, then field, then the samples' order
    names = [COUNTERS.get(f, (f, 1.0))[0] for f in fields]
    series = list(codes)
    return Counters(
        t[order] - origin,
        [names[j] for j in field_of[order].tolist()],
        [series[j] for j in d[order].tolist()],
        values[order],
    )


# -- the document ------------------------------------------------------------------------------------------
def trace_origin(run: Run) -> int:
    """The trace's time zero (host clock, ns): the first request's start (of any rank, on rank 0's clock), or
    an earlier time if a mark falls before it (a mapped device time within the sync uncertainty, a malformed
    record's host stamp, a captured kernel), so that no event starts before zero."""
    starts = [min(raw.host_ns) for raw in run.records if raw.host_ns]
    starts += [
        min(raw.host_ns) + t.offset_ns for t in (run.ranks or [])[1:] for raw in t.records if raw.host_ns
    ]
    if run.kernels is not None and run.kernels.events["start_ns"]:
        starts.append(min(run.kernels.events["start_ns"]))
    devices = [d for raw in run.records for d in raw.device_ns if d is not None]
    devices += [
        d + t.offset_ns
        for t in (run.ranks or [])[1:]
        for raw in t.records
        for d in raw.device_ns
        if d is not None
    ]
    samples = ((run.telemetry or {}).get("samples") or {}).get("t_ns") or []
    return min(starts + devices or [t for t in samples if isinstance(t, int)] or [0])


def _kernel_events(run: Run, origin: int) -> tuple[list[Item], dict[int, str]]:
    """The kernel capture's request, operators and kernels, and the names of the threads they add."""
    capture = run.kernels
    if capture is None:
        return [], {}
    events: list[Item] = []
    if capture.request is not None:
        events += _request_events(RawRequest.from_dict(capture.request), "kernel capture", origin)
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
        events.append(_span(capture.names[name], cat, tid, start, start + dur, origin, step=step))
    return events, threads


def _thread_metadata(with_device: bool, with_telemetry: bool, extra: dict[int, str]) -> list[Event]:
    """Names and order of the processes and threads (``extra``: more threads of the run's process)."""
    events = [
        _metadata(PID_RUN, 0, "process_name", {"name": "llmprof"}),
        _metadata(PID_RUN, 0, "process_sort_index", {"sort_index": 1}),
    ]
    for tid, name in {**THREADS, **extra}.items():
        if tid != TID_DEVICE or with_device:
            events.append(_metadata(PID_RUN, tid, "thread_name", {"name": name}))
            events.append(_metadata(PID_RUN, tid, "thread_sort_index", {"sort_index": tid}))
    if with_telemetry:
        events.append(_metadata(PID_TELEMETRY, 0, "process_name", {"name": "telemetry"}))
        events.append(_metadata(PID_TELEMETRY, 0, "process_sort_index", {"sort_index": 2}))
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
            _metadata(pid, 0, "process_name", {"name": name}),
            _metadata(pid, 0, "process_sort_index", {"sort_index": 1}),
        ]
        for tid, thread in THREADS.items():
            if tid != TID_DEVICE or with_device:
                events.append(_metadata(pid, tid, "thread_name", {"name": thread}))
        shifted = origin - timeline.offset_ns  # its stamps + offset = rank 0's clock
        for raw, request in zip(timeline.records, _request_names(timeline.records)):
            for item in _request_events(raw, request, shifted) if raw.label else []:
                events.append(replace(item, pid=pid) if isinstance(item, Batch) else {**item, "pid": pid})
    return events


def trace_items(run: Run) -> tuple[list[Item], dict[str, str]]:
    """The trace of ``run`` as events and batches of events, in the JSON trace's order, and its
    ``otherData`` (see the module docstring for the layout)."""
    origin = trace_origin(run)
    with_device = any(has_device_timeline(raw) for raw in run.records)
    counters = _counter_events(run.telemetry, origin)
    kernels, threads = _kernel_events(run, origin)
    items: list[Item] = []
    items += _thread_metadata(with_device, len(counters) > 0, {**threads, **_stage_threads(run.records)})
    if run.ranks and len(run.ranks) > 1:
        items[0]["args"]["name"] = f"llmprof: rank 0 ({run.ranks[0].hostname})"
    for raw, name in zip(run.records, _request_names(run.records)):
        if raw.label:
            items += _request_events(raw, name, origin, run.request_metrics)
    items += _rank_events(run, origin, with_device)
    return items + kernels + ([counters] if len(counters) else []), _other_data(run, origin, with_device)


def build_trace(run: Run) -> dict[str, Any]:
    """The trace-event JSON object of ``run`` (see the module docstring for the layout)."""
    items, other = trace_items(run)
    events = [e for item in items for e in ((item,) if isinstance(item, dict) else item.events())]
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def render(run: Run, out: IO[str]) -> None:
    """``build_trace(run)`` as JSON text, ready to save as ``*.json`` (or ``*.trace.json``)."""
    out.write(json.dumps(build_trace(run), separators=(",", ":"), allow_nan=False))
