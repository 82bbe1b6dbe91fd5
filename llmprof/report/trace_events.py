"""The pieces of a trace (:mod:`llmprof.report.trace`): where each thread of events goes (its pid and tid), the
single Chrome trace events, and the columns of many (:class:`EventColumns`: one thread's per-step spans or
instants; :class:`Counters`: the telemetry), which the JSON writer expands into events and the Perfetto writer
encodes as they are. numpy only: never imports torch or NVML."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as default
from typing import Any

import numpy as np

PID_RUN, PID_TELEMETRY, PID_ENGINE, PID_RANKS = 1, 2, 3, 100  # rank R > 0: PID_RANKS + R
TID_REQUESTS, TID_HOST, TID_DEVICE, TID_TOKENS = 1, 2, 3, 4
TID_OPERATORS, TID_KERNELS = 5, 10  # kernels of device N: TID_KERNELS + N
TID_STAGES = 50  # a device_map model: the stages of its L-th GPU on TID_STAGES + L
TID_COUNTERS = 0
THREADS = {TID_REQUESTS: "requests", TID_HOST: "host", TID_DEVICE: "device", TID_TOKENS: "tokens"}

Event = dict[str, Any]


def _us(ns: int, origin: int) -> float:
    """A host-clock time in nanoseconds as trace microseconds from ``origin`` (an integer over 1000 is
    already the double nearest its 3-decimal value: no rounding needed)."""
    return (ns - origin) / 1000


def span(name: str, cat: str, tid: int, start: int, end: int, origin: int, **args: Any) -> Event:
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


def metadata(pid: int, tid: int, name: str, args: dict[str, Any]) -> Event:
    """A metadata event ("M"): the name or sort index of a process (``tid`` 0) or thread."""
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


@dataclass
class EventColumns:
    """Many trace events of one kind on one thread as columns: spans ("X", from ``start`` to ``end``; a
    reversed one is clipped to zero length) or instants ("i", at ``start``), in nanoseconds from the trace's
    origin; a name per event and at most one argument (an int column)."""

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
        """The columns as trace events (the same as one ``span`` or instant at a time)."""
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


Item = Event | EventColumns | Counters  # what a trace is built of: single events, and columns of many
