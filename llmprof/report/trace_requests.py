"""The events of one request in a trace (:mod:`llmprof.report.trace`): its span with its metrics, the host's
and the device's spans of every step (forwards, sampling, the vision encoder, the host gaps), its token instants
and a device_map model's stages, each thread's per-step events as columns (:class:`EventColumns`). numpy only:
never imports torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from llmprof.analysis.devices import forward_stages
from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.record import Label, RawRequest, at_steps
from llmprof.analysis.registry import BY_NAME
from llmprof.report.trace_events import (
    TID_DEVICE,
    TID_HOST,
    TID_REQUESTS,
    TID_STAGES,
    TID_TOKENS,
    EventColumns,
    Item,
    span,
)

REQUEST_ARGS = ("ttft", "tpot", "latency", "tps")  # the four numbers, in each request span's args
ARG_UNITS = {"s": ("ms", 1e3), "tok/s": ("tokens/s", 1.0)}  # unit -> (as the args name it, scale)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


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


def _compute_spans(marks: _Marks, tid: int) -> list[EventColumns]:
    """Forward ("prefill", "decode k": the forward producing token k), sampling and vision encoder spans."""
    _, begin, end = marks.pairs(Label.VISION_BEGIN, Label.VISION_END)
    columns = [EventColumns("X", "vision", tid, ["vision encoder"] * len(begin), begin, end)]
    steps, begin, end = marks.pairs(Label.FORWARD_BEGIN, Label.FORWARD_END)
    names = ["prefill" if step == 0 else f"decode {step + 1}" for step in steps.tolist()]
    columns.append(EventColumns("X", "forward", tid, names, begin, end, {"step": steps}))
    steps, end = marks.last(Label.FORWARD_END)
    sampled, token = at_steps(*marks.first(Label.TOKEN), steps + 1)
    columns.append(_spans_to_token("sampling", tid, steps, sampled, end, token))
    return columns


def _spans_to_token(
    name: str, tid: int, steps: np.ndarray, kept: np.ndarray, start: np.ndarray, end: np.ndarray
) -> EventColumns:
    """Spans ``name`` (its category too) of the steps ``kept`` says, each with the token it leads to."""
    n = int(kept.sum())
    return EventColumns("X", name, tid, [name] * n, start[kept], end[kept], {"token": steps[kept] + 1})


def _host_spans(raw: RawRequest, marks: _Marks, origin: int) -> list[Item]:
    """The "host" thread: host prep (start to the first forward launch) and the spans between host stamps."""
    items: list[Item] = list(_compute_spans(marks, TID_HOST))
    _, launches = marks.first(Label.FORWARD_BEGIN)
    if len(launches):
        start, _ = raw.window
        items.insert(0, span("host prep", "host", TID_HOST, start, int(launches.min()) + origin, origin))
    return items


def _device_spans(marks: _Marks) -> list[EventColumns]:
    """The "device" thread: the spans between device times, plus each "host gap" (token k-1 to forward k)."""
    columns = _compute_spans(marks, TID_DEVICE)
    steps, launches = marks.first(Label.FORWARD_BEGIN)
    decoding = steps >= 1
    steps, launches = steps[decoding], launches[decoding]
    found, token = at_steps(*marks.first(Label.TOKEN), steps)
    columns.append(_spans_to_token("host gap", TID_DEVICE, steps, found, token, launches))
    return columns


def _token_instants(raw: RawRequest, marks: _Marks) -> EventColumns:
    """The "tokens" thread: "token k" at T_k, with the number of sequences still generating at that step."""
    steps = np.arange(1, max(raw.tokens_per_sequence, default=0) + 1)
    found, times = at_steps(*marks.first(Label.TOKEN), steps)
    steps = steps[found]
    lengths = np.sort(np.asarray(raw.tokens_per_sequence, dtype=np.int64))
    generating = len(lengths) - np.searchsorted(lengths, steps, side="left")
    names = [f"token {k}" for k in steps.tolist()]
    return EventColumns(
        "i", "token", TID_TOKENS, names, times[found], None, {"sequences generating": generating}
    )


def has_device_timeline(raw: RawRequest) -> bool:
    """Whether a record carries device (CUDA event) times to draw a "device" thread from."""
    return raw.backend == "cuda" and any(d is not None for d in raw.device_ns)


def request_events(
    raw: RawRequest, name: str, origin: int, measure: Callable[[RawRequest], RequestMetrics] = compute_request
) -> list[Item]:
    """Every event of one request on the "llmprof" process (its metrics by ``measure``)."""
    start, end = raw.window
    cat = "warm-up" if raw.warmup else "request"
    items: list[Item] = [span(name, cat, TID_REQUESTS, start, end, origin, **_request_args(raw, measure))]
    host = _Marks(raw, device=False, origin=origin)
    device = _Marks(raw, device=True, origin=origin) if any(d is not None for d in raw.device_ns) else host
    items += _host_spans(raw, host, origin)
    if has_device_timeline(raw):
        items += _device_spans(device)
    items += _stage_spans(raw, origin)
    items.append(_token_instants(raw, device))
    return [i for i in items if not isinstance(i, EventColumns) or len(i)]


def _stage_spans(raw: RawRequest, origin: int) -> list[EventColumns]:
    """A device_map model: each GPU's stage of every forward, on its own thread."""
    forwards = forward_stages(raw)
    steps = np.array([step for step, _, _ in forwards], dtype=np.int64)
    done = np.array([begin for _, begin, _ in forwards], dtype=np.int64) - origin
    columns = []
    for lane, device in enumerate(raw.device_forward_ends or ()):
        reached = done + np.array([stages[lane] for _, _, stages in forwards], dtype=np.int64)
        names = [f"{device} stage"] * len(steps)
        columns.append(EventColumns("X", "stage", TID_STAGES + lane, names, done, reached, {"step": steps}))
        done = reached
    return columns


def stage_threads(records: list[RawRequest]) -> dict[int, str]:
    """The threads of a device_map model's stages, one per GPU in its order: tid -> "stages (cuda:N)"."""
    devices = next((list(r.device_forward_ends) for r in records if r.device_forward_ends), [])
    return {TID_STAGES + lane: f"stages ({device})" for lane, device in enumerate(devices)}


def request_names(records: list[RawRequest]) -> list[str]:
    """ "warm-up N" and "request N", each numbered from 1 in run order."""
    counts = {True: 0, False: 0}
    names = []
    for raw in records:
        counts[raw.warmup] += 1
        names.append(f"{'warm-up' if raw.warmup else 'request'} {counts[raw.warmup]}")
    return names
