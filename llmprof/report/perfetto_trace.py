"""A run's trace in Perfetto's native format: protobuf TracePackets of TrackEvents, written with the protos
of the ``perfetto`` package (``pip install 'llmprof[perfetto]'``). Opens in ui.perfetto.dev like the JSON trace
(:mod:`llmprof.report.trace`), from which it is converted, so both show the same processes, threads, spans,
instants and counters; it is several times smaller: times are integers, and every name, category and
argument name is interned (written once, then referred to by number).

Layout: each process of the JSON trace is a process track, each of its threads a child track (in the JSON
trace's sort order; a span that overlaps another of its thread without nesting in it, which a Perfetto track
cannot hold, goes to a track "<thread> (overlapping N)" beside it), each counter series a counter track of
the telemetry process; the JSON trace's
``otherData`` (the run's configuration, how to read the clock) are the arguments of an instant "llmprof run"
at time zero on the run's process track. Never imports torch or NVML.
"""

from __future__ import annotations

import json
from typing import IO, Any

import numpy as np

from llmprof.errors import UsageError
from llmprof.report.trace import PID_RUN, build_trace
from llmprof.runfile import Run

SEQUENCE = 1  # every packet is on one sequence, whose interned strings it shares
TRACK_SPACING = (
    1_000_000  # a track's uuid: pid * TRACK_SPACING for a process, + its number + 1 for a track in it
)


class PerfettoUnavailable(UsageError):
    """The perfetto package (its protos) is not installed."""


def _protos() -> Any:
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2
    except ImportError as exc:
        raise PerfettoUnavailable(
            "the Perfetto format needs the perfetto package: pip install 'llmprof[perfetto]'"
        ) from exc
    return perfetto_trace_pb2


def check_available() -> None:
    """Raise PerfettoUnavailable now, before any work, when the perfetto package is missing."""
    _protos()


def _ns(us: float) -> int:
    """A JSON trace time (microseconds, to the nanosecond) as integer nanoseconds."""
    return round(us * 1000)


class _Writer:
    """The packets of one trace, each serialized as it is made (a big trace never holds a message per event):
    track descriptors first, then events in time order, interning strings as they first appear."""

    def __init__(self, pb: Any):
        self.pb = pb
        self.chunks: list[bytes] = []
        self.interned: dict[tuple[str, str], int] = {}  # (table, string) -> iid
        self.tracks: dict[tuple[int, int | str], int] = {}  # (pid, tid or counter series) -> uuid
        self.flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED  # the first packet's, then:
        self.needs_state = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE

    def packet(self) -> Any:
        packet = self.pb.TracePacket()
        packet.trusted_packet_sequence_id = SEQUENCE
        packet.sequence_flags, self.flags = self.flags, self.needs_state
        return packet

    def write(self, packet: Any) -> None:
        """Append ``packet`` as one ``Trace.packet`` field (number 1, length-delimited)."""
        body = packet.SerializeToString()
        self.chunks.append(b"\n" + _varint(len(body)) + body)

    def iid(self, packet: Any, table: str, text: str) -> int:
        """The number of ``text`` in the interned ``table``; defined in ``packet`` when it is new."""
        key = (table, text)
        iid = self.interned.get(key)
        if iid is None:
            iid = self.interned[key] = len(self.interned) + 1
            entry = getattr(packet.interned_data, table).add()
            entry.iid = iid
            entry.name = text
        return iid

    def process(self, pid: int, name: str, rank: int) -> None:
        packet = self.packet()
        descriptor = packet.track_descriptor
        descriptor.uuid = self.tracks[pid, -1] = pid * TRACK_SPACING
        descriptor.process.pid = pid
        descriptor.process.process_name = name
        descriptor.child_ordering = self.pb.TrackDescriptor.EXPLICIT
        descriptor.sibling_order_rank = rank
        self.write(packet)

    def track(
        self, pid: int, tid: int | str, name: str | None = None, rank: int = 0, counter: bool = False
    ) -> int:
        """The uuid of a thread (or counter series) of process ``pid``, described on first use."""
        uuid = self.tracks.get((pid, tid))
        if uuid is not None:
            return uuid
        if (pid, -1) not in self.tracks:
            self.process(pid, f"process {pid}", pid)
        packet = self.packet()
        descriptor = packet.track_descriptor
        descriptor.uuid = uuid = self.tracks[pid, tid] = pid * TRACK_SPACING + len(self.tracks) + 1
        descriptor.parent_uuid = pid * TRACK_SPACING
        descriptor.name = name if name is not None else f"thread {tid}"
        descriptor.sibling_order_rank = rank
        if counter:
            descriptor.counter.SetInParent()
        self.write(packet)
        return uuid

    def event(
        self, kind: int, ts: int, track: int, source: dict[str, Any] | None, value: float | None = None
    ) -> None:
        """One TrackEvent of type ``kind``; named (with its category and arguments) from ``source``; a
        counter's ``value``."""
        packet = self.packet()
        packet.timestamp = ts
        event = packet.track_event
        event.type = kind
        event.track_uuid = track
        if value is not None:
            event.double_counter_value = value
        if source is not None:
            event.name_iid = self.iid(packet, "event_names", source["name"])
            if source.get("cat"):
                event.category_iids.append(self.iid(packet, "event_categories", source["cat"]))
            for key, item in (source.get("args") or {}).items():
                annotation = event.debug_annotations.add()
                annotation.name_iid = self.iid(packet, "debug_annotation_names", key)
                if isinstance(item, bool):
                    annotation.bool_value = item
                elif isinstance(item, int):
                    annotation.int_value = item
                elif isinstance(item, float):
                    annotation.double_value = item
                else:
                    annotation.string_value = item if isinstance(item, str) else json.dumps(item)
        self.write(packet)


def _varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint: 7 bits a byte, low first, the high bit set on all but the last."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _describe(writer: _Writer, events: list[dict[str, Any]]) -> None:
    """The process and thread tracks the JSON trace's metadata events name, in their sort order."""
    names: dict[tuple[int, int], str] = {}
    ranks: dict[tuple[int, int], int] = {}
    for e in events:
        if e.get("ph") != "M":
            continue
        key = (e["pid"], e["tid"])
        if e["name"] in ("process_name", "thread_name"):
            names[key if e["name"] == "thread_name" else (e["pid"], -1)] = e["args"]["name"]
        elif e["name"] in ("process_sort_index", "thread_sort_index"):
            ranks[key if e["name"] == "thread_sort_index" else (e["pid"], -1)] = e["args"]["sort_index"]
    for (pid, tid), name in names.items():
        if tid == -1:
            writer.process(pid, name, ranks.get((pid, -1), pid))
    for (pid, tid), name in names.items():
        if tid != -1:
            writer.track(pid, tid, name, ranks.get((pid, tid), tid))


def _lanes(events: list[dict[str, Any]], ts: np.ndarray, dur: np.ndarray) -> list[int]:
    """Per event, the lane of its thread it is drawn on: 0, or for a span that overlaps another without
    nesting in it (a mapped device time within the sync uncertainty of the span before) the first lane where
    it nests. A Perfetto track's slices must nest; the JSON trace draws such overlaps on one thread."""
    lanes = [0] * len(events)
    by_track: dict[tuple[int, int], list[int]] = {}
    for i, e in enumerate(events):
        if e["ph"] == "X":
            by_track.setdefault((e["pid"], e["tid"]), []).append(i)
    for spans in by_track.values():
        opened: list[list[int]] = []  # per lane, the ends of its open spans, innermost last
        for i in sorted(spans, key=lambda i: (ts[i], -dur[i])):
            start, end = ts[i], ts[i] + dur[i]
            for lane, stack in enumerate(opened):
                while stack and stack[-1] <= start:
                    stack.pop()
                if not stack or end <= stack[-1]:
                    break
            else:
                lane = len(opened)
                opened.append([])
            opened[lane].append(end)
            lanes[i] = lane
    return lanes


def _timeline(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, list[int]]:
    """The events that draw, the order to write their boundaries in, and each one's lane: ``(events, order,
    ends, lanes)``, where ``order[j]`` indexes ``events`` and ``ends[j]`` says that the j-th boundary closes
    a span rather than opening it (or writing a whole zero-length span, instant or counter). A track's spans
    must nest in the order written: at one time, the spans that end close first (the one opened last
    first), then those that begin open (the longest first)."""
    drawn = [e for e in events if e.get("ph") in ("X", "i", "C")]
    ts = np.array([_ns(e["ts"]) for e in drawn], dtype=np.int64)
    dur = np.array([_ns(e.get("dur", 0)) if e["ph"] == "X" else 0 for e in drawn], dtype=np.int64)
    index = np.arange(len(drawn))
    spans = np.flatnonzero(dur > 0)
    time = np.concatenate([ts, ts[spans] + dur[spans]])
    kind = np.concatenate([np.ones(len(drawn), dtype=np.int8), np.zeros(len(spans), dtype=np.int8)])
    tie = np.concatenate([-dur, -ts[spans]])
    order = np.concatenate([index, -spans - 1])  # the ends: a span opened later closes first
    sorted_ = np.lexsort((order, tie, kind, time))
    position = order[sorted_]
    return drawn, np.where(position < 0, -position - 1, position), position < 0, _lanes(drawn, ts, dur)


def render(run: Run, out: IO[bytes]) -> None:
    """Write the Perfetto protobuf trace of ``run`` (the JSON trace's events, see the module docstring)."""
    pb = _protos()
    document = build_trace(run)
    events = document["traceEvents"]
    writer = _Writer(pb)
    _describe(writer, events)
    TrackEvent = pb.TrackEvent
    other = {"name": "llmprof run", "cat": "run", "args": document.get("otherData", {})}
    writer.event(TrackEvent.TYPE_INSTANT, 0, writer.track(PID_RUN, -1), other)
    drawn, order, ends, lanes = _timeline(events)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    begin, end, instant = TrackEvent.TYPE_SLICE_BEGIN, TrackEvent.TYPE_SLICE_END, TrackEvent.TYPE_INSTANT
    for i, closes in zip(order.tolist(), ends.tolist()):
        e = drawn[i]
        ts = _ns(e["ts"])
        if e["ph"] == "C":
            for series, value in e["args"].items():
                name = f"{e['name']} [{series}]"
                track = writer.track(e["pid"], f"{e['name']}\0{series}", name, counter=True)
                writer.event(TrackEvent.TYPE_COUNTER, ts, track, None, value)
            continue
        lane = lanes[i]
        if lane:
            thread = threads.get((e["pid"], e["tid"]), f"thread {e['tid']}")
            track = writer.track(e["pid"], f"{e['tid']}\0{lane}", f"{thread} (overlapping {lane})", e["tid"])
        else:
            track = writer.track(e["pid"], e["tid"])
        if e["ph"] == "i":
            writer.event(instant, ts, track, e)
        elif closes:
            writer.event(end, ts + _ns(e["dur"]), track, None)
        else:
            writer.event(begin, ts, track, e)
            if _ns(e["dur"]) <= 0:  # a zero-length span closes at once
                writer.event(end, ts, track, None)
    out.write(b"".join(writer.chunks))
