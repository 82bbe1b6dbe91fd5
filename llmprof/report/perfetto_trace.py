"""A run's trace in Perfetto's native format: protobuf TracePackets of TrackEvents. Opens in ui.perfetto.dev like
the JSON trace (:mod:`llmprof.report.trace`), from whose events and columns of events it is written, so both
show the same processes, threads, spans, instants and counters; it is smaller (times are integers; every
name, category and argument name is interned: written once, the most used first, then referred to by number)
and faster to write: the descriptors and irregular arguments go through the protos of the ``perfetto``
package (``pip install 'llmprof[perfetto]'``), the event packets are encoded a column at a time
(:mod:`llmprof.report.protobuf_columns`), byte for byte as those protos would encode them one at a time.

Layout: each process of the JSON trace is a process track, each of its threads a child track (in the JSON
trace's sort order; a span that overlaps another of its thread without nesting in it, which a Perfetto track
cannot hold, goes to a track "<thread> (overlapping N)" beside it), each counter series a counter track of
the telemetry process; the JSON trace's ``otherData`` (the run's configuration, how to read the clock) are
the arguments of an instant "llmprof run" at time zero on the run's process track. Every interned string is
defined in the first packet, every track described before the events. Never imports torch or NVML.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from llmprof.errors import UsageError
from llmprof.report import protobuf_columns as pc
from llmprof.report.trace import trace_items
from llmprof.report.trace_events import PID_RUN, PID_TELEMETRY, Counters, Event, EventColumns, Item
from llmprof.runfile import Run

SEQUENCE = 1  # every packet is on one sequence, whose interned strings it shares
INTERNED_TABLES = ("event_names", "event_categories", "debug_annotation_names")
NEEDS_STATE = 2  # TracePacket.SEQ_NEEDS_INCREMENTAL_STATE, every packet's sequence_flags but the first's
CHUNK = 1 << 16  # event packets encoded at a time
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
    """The descriptors and interned strings of one trace, with the protobuf library: every string is
    interned up front, in the first packet (which clears the sequence's state), and every track described
    before the events, which are then encoded a column at a time (:func:`_events`)."""

    def __init__(self, pb: Any):
        self.pb = pb
        self.packets: list[Any] = []
        self.interned: dict[str, dict[str, int]] = {t: {} for t in INTERNED_TABLES}  # table -> string -> iid
        self.count = 0  # strings interned
        self.tracks: dict[tuple[int, int | str], int] = {}  # (pid, tid or counter series) -> uuid

    def iid(self, table: str, text: str) -> int:
        """The number of ``text`` in the interned ``table`` (numbered across the tables, from 1)."""
        return self.iids(table, [text])[0]

    def iids(self, table: str, texts: list[str]) -> list[int]:
        """The numbers of ``texts`` in the interned ``table``, each new one numbered next."""
        numbers = self.interned[table]
        out = []
        for text in texts:
            iid = numbers.get(text)
            if iid is None:
                self.count += 1
                iid = numbers[text] = self.count
            out.append(iid)
        return out

    def packet(self) -> Any:
        packet = self.pb.TracePacket()
        packet.trusted_packet_sequence_id = SEQUENCE
        packet.sequence_flags = NEEDS_STATE
        self.packets.append(packet)
        return packet

    def process(self, pid: int, name: str, rank: int) -> None:
        descriptor = self.packet().track_descriptor
        descriptor.uuid = self.tracks[pid, -1] = pid * TRACK_SPACING
        descriptor.process.pid = pid
        descriptor.process.process_name = name
        descriptor.child_ordering = self.pb.TrackDescriptor.EXPLICIT
        descriptor.sibling_order_rank = rank

    def track(
        self, pid: int, tid: int | str, name: str | None = None, rank: int = 0, counter: bool = False
    ) -> int:
        """The uuid of a thread (or counter series) of process ``pid``, described on first use."""
        uuid = self.tracks.get((pid, tid))
        if uuid is not None:
            return uuid
        if (pid, -1) not in self.tracks:
            self.process(pid, f"process {pid}", pid)
        descriptor = self.packet().track_descriptor
        descriptor.uuid = uuid = self.tracks[pid, tid] = pid * TRACK_SPACING + len(self.tracks) + 1
        descriptor.parent_uuid = pid * TRACK_SPACING
        descriptor.name = name if name is not None else f"thread {tid}"
        descriptor.sibling_order_rank = rank
        if counter:
            descriptor.counter.SetInParent()
        return uuid

    def annotations(self, args: dict[str, Any]) -> bytes:
        """``args`` as the encoded debug annotations of a TrackEvent."""
        event = self.pb.TrackEvent()
        for key, item in args.items():
            annotation = event.debug_annotations.add()
            annotation.name_iid = self.iid("debug_annotation_names", key)
            if isinstance(item, bool):
                annotation.bool_value = item
            elif isinstance(item, int):
                annotation.int_value = item
            elif isinstance(item, float):
                annotation.double_value = item
            else:
                annotation.string_value = item if isinstance(item, str) else json.dumps(item)
        return event.SerializeToString()

    def head(self) -> bytes:
        """The packets written so far, the first carrying every interned string and clearing the state."""
        first = self.packets[0]
        first.sequence_flags = self.pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
        for table, numbers in self.interned.items():
            for text, iid in numbers.items():
                entry = getattr(first.interned_data, table).add()
                entry.iid = iid
                entry.name = text
        n = len(self.packets)
        bodies = [packet.SerializeToString() for packet in self.packets]
        return pc.encode([pc.Message(1, [pc.Encoded(n, np.arange(n), bodies)])])  # each a Trace.packet


def _describe(writer: _Writer, items: list[Item]) -> None:
    """The process and thread tracks the JSON trace's metadata events name, in their sort order."""
    names: dict[tuple[int, int], str] = {}
    ranks: dict[tuple[int, int], int] = {}
    for e in items:
        if not isinstance(e, dict) or e.get("ph") != "M":
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


SPAN, INSTANT, COUNTER, END = 0, 1, 2, 3  # an event's kind (a span's packets: SPAN opens it, END closes it)
TYPES = np.array([1, 3, 4, 2])  # per kind, TrackEvent.type: TYPE_SLICE_BEGIN, INSTANT, COUNTER, SLICE_END
COLUMNS = ("ts", "dur", "kind", "pid", "tid", "name", "cat", "arg", "number", "value", "extra", "track")


class _Table:
    """The drawn events of the trace, one row each, as columns: ``ts`` and ``dur`` (ns from the origin),
    ``kind``, ``pid`` and ``tid``, the interned ``name`` and ``cat`` (0: none), one int argument (``arg``
    its interned name, 0: none, and ``value``), or ``extra``, the index of other arguments already encoded
    (-1: none), and a counter's ``track`` (its uuid) and ``value``."""

    def __init__(self, writer: _Writer, items: list[Item]):
        _intern_by_use(writer, items)
        self.extras: list[bytes] = []
        parts: list[dict[str, np.ndarray]] = []
        rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        for item in items:
            if isinstance(item, EventColumns):
                parts.append(self._event_columns(writer, item))
            elif isinstance(item, Counters):
                parts.append(self._counters(writer, item))
            elif item.get("ph") in ("X", "i", "C"):
                self._event(writer, item, rows)
        parts.append(
            {c: np.array(v, dtype=np.float64 if c == "value" else np.int64) for c, v in rows.items()}
        )
        self.columns = {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}

    @staticmethod
    def _event_columns(writer: _Writer, group: EventColumns) -> dict[str, np.ndarray]:
        n = len(group)
        ((key, values),) = group.args.items() if group.args else (("", np.zeros(n, dtype=np.int64)),)
        return {
            "ts": group.start,
            "dur": np.maximum(group.end - group.start, 0) if group.end is not None else np.zeros(n, np.int64),
            "kind": np.full(n, SPAN if group.ph == "X" else INSTANT),
            "pid": np.full(n, group.pid),
            "tid": np.full(n, group.tid),
            "name": np.array(writer.iids("event_names", group.names), dtype=np.int64),
            "cat": np.full(n, writer.iid("event_categories", group.cat)),
            "arg": np.full(n, writer.iid("debug_annotation_names", key) if key else 0),
            "number": values.astype(np.int64) if key else np.zeros(n, dtype=np.int64),
            "value": np.zeros(n),
            "extra": np.full(n, -1),
            "track": np.zeros(n, dtype=np.int64),
        }

    @staticmethod
    def _counters(writer: _Writer, counters: Counters) -> dict[str, np.ndarray]:
        n = len(counters)
        pid = PID_TELEMETRY
        uuids = {
            (name, series): writer.track(pid, f"{name}\0{series}", f"{name} [{series}]", counter=True)
            for name, series in dict.fromkeys(zip(counters.names, counters.series))
        }
        zeros = np.zeros(n, dtype=np.int64)
        return {
            **{column: zeros for column in ("dur", "tid", "name", "cat", "arg", "number")},
            "ts": counters.ts,
            "kind": np.full(n, COUNTER),
            "pid": np.full(n, pid),
            "value": counters.values,
            "extra": np.full(n, -1),
            "track": np.array([uuids[key] for key in zip(counters.names, counters.series)], dtype=np.int64),
        }

    def _event(self, writer: _Writer, e: Event, rows: dict[str, list[Any]]) -> None:
        ts = _ns(e["ts"])
        if e["ph"] == "C":
            for series, value in e["args"].items():
                name = f"{e['name']} [{series}]"
                track = writer.track(e["pid"], f"{e['name']}\0{series}", name, counter=True)
                self._row(rows, ts, 0, COUNTER, e["pid"], 0, 0, 0, 0, 0, value, -1, track)
            return
        args = e.get("args") or {}
        arg, number, extra = 0, 0, -1
        ((key, item),) = args.items() if len(args) == 1 else (("", None),)
        if type(item) is int and -(2**63) <= item < 2**63:  # an int64: the column's type
            arg, number = writer.iid("debug_annotation_names", key), item
        elif args:
            extra = len(self.extras)
            self.extras.append(writer.annotations(args))
        cat = writer.iid("event_categories", e["cat"]) if e.get("cat") else 0
        kind = SPAN if e["ph"] == "X" else INSTANT
        dur = _ns(e.get("dur", 0)) if kind == SPAN else 0
        name = writer.iid("event_names", e["name"])
        self._row(rows, ts, dur, kind, e["pid"], e["tid"], name, cat, arg, number, 0.0, extra, 0)

    @staticmethod
    def _row(rows: dict[str, list[Any]], *values: Any) -> None:
        for column, value in zip(COLUMNS, values):
            rows[column].append(value)


def _intern_by_use(writer: _Writer, items: list[Item]) -> None:
    """Intern the events' names, categories and argument names, the most used first: a number under 128
    takes one byte, under 16384 two (a long run has a name per step)."""
    uses: dict[str, Counter[str]] = {table: Counter() for table in INTERNED_TABLES}
    for item in items:
        if isinstance(item, EventColumns):
            uses["event_names"].update(item.names)
            uses["event_categories"][item.cat] += len(item)
            for key in item.args:
                uses["debug_annotation_names"][key] += len(item)
        elif isinstance(item, dict) and item.get("ph") in ("X", "i"):
            uses["event_names"][item["name"]] += 1
            uses["event_categories"][item.get("cat") or ""] += 1
            for key in item.get("args") or ():
                uses["debug_annotation_names"][key] += 1
    ranked = sorted(
        ((n, table, text) for table, c in uses.items() for text, n in c.items() if text), reverse=True
    )
    for _, table, text in ranked:
        writer.iid(table, text)


def _lanes(track: np.ndarray, ts: np.ndarray, dur: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Per event, the lane of its thread it is drawn on: 0, or for a span that overlaps another without
    nesting in it (a mapped device time within the sync uncertainty of the span before) the first lane where
    it nests. A Perfetto track's slices must nest; the JSON trace draws such overlaps on one thread.
    ``track`` numbers each event's thread; ``spans`` says which events are spans."""
    lanes = np.zeros(len(ts), dtype=np.int64)
    at = np.flatnonzero(spans)
    at = at[np.lexsort((-dur[at], ts[at], track[at]))]  # by thread, then as the spans open
    bounds = np.flatnonzero(np.diff(track[at])) + 1
    for rows in np.split(at, bounds):
        start, end = ts[rows], ts[rows] + dur[rows]
        if np.all(start[1:] >= end[:-1]):
            continue  # one after the other: every span on lane 0
        opened: list[list[int]] = []  # per lane, the ends of its open spans, innermost last
        for i, s, e in zip(rows.tolist(), start.tolist(), end.tolist()):
            for lane, stack in enumerate(opened):
                while stack and stack[-1] <= s:
                    stack.pop()
                if not stack or e <= stack[-1]:
                    break
            else:
                lane = len(opened)
                opened.append([])
            opened[lane].append(e)
            lanes[i] = lane
    return lanes


def _timeline(ts: np.ndarray, dur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order to write the events' boundaries in: ``(order, ends)``, where ``order[j]`` indexes the events
    and ``ends[j]`` says that the j-th boundary closes a span rather than opening it (or writing a whole
    zero-length span, instant or counter). A track's spans must nest in the order written: at one time, the
    spans that end close first (the one opened last first), then those that begin open (the longest first)."""
    index = np.arange(len(ts))
    spans = np.flatnonzero(dur > 0)
    time = np.concatenate([ts, ts[spans] + dur[spans]])
    kind = np.concatenate([np.ones(len(ts), dtype=np.int8), np.zeros(len(spans), dtype=np.int8)])
    tie = np.concatenate([-dur, -ts[spans]])
    order = np.concatenate([index, -spans - 1])  # the ends: a span opened later closes first
    position = order[np.lexsort((order, tie, kind, time))]
    return np.where(position < 0, -position - 1, position), position < 0


def _tracks(writer: _Writer, table: _Table, items: list[Item]) -> np.ndarray:
    """Each event's track uuid: a counter's series, else its thread's or, for an overlapping span, a track
    "<thread> (overlapping N)" beside it."""
    c = table.columns
    lanes = _lanes(c["pid"] << 21 | c["tid"], c["ts"], c["dur"], c["kind"] == SPAN)
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in items
        if isinstance(e, dict) and e.get("name") == "thread_name"
    }
    tracks = c["track"].copy()  # the counters' already
    drawn = c["kind"] != COUNTER
    keys, inverse = np.unique((c["pid"] << 42 | c["tid"] << 21 | lanes)[drawn], return_inverse=True)
    uuids = []
    for key in keys.tolist():
        pid, tid, lane = key >> 42, key >> 21 & (1 << 21) - 1, key & (1 << 21) - 1
        if lane:
            thread_name = threads.get((pid, tid), f"thread {tid}")
            uuids.append(writer.track(pid, f"{tid}\0{lane}", f"{thread_name} (overlapping {lane})", tid))
        else:
            uuids.append(writer.track(pid, tid))
    tracks[drawn] = np.array(uuids, dtype=np.int64)[inverse]
    return tracks


def _events(table: _Table, tracks: np.ndarray) -> Iterator[bytes]:
    """Every event's packets in time order (a span's BEGIN and END), each framed, encoded a column at a time,
    ``CHUNK`` packets at a time (the arrays stay small, their memory reused)."""
    c = table.columns
    if len(c["ts"]) and c["ts"].min() < 0:  # trace_origin precedes every event: a timestamp is unsigned
        raise ValueError(f"an event {-int(c['ts'].min())} ns before the trace's origin")
    order, ends = _timeline(c["ts"], np.where(c["kind"] == SPAN, c["dur"], 0))
    zero = ~ends & (c["kind"][order] == SPAN) & (c["dur"][order] == 0)  # written whole: BEGIN then END
    rows = np.repeat(order, 1 + zero)
    closing = np.repeat(ends, 1 + zero)
    closing[np.cumsum(1 + zero)[zero] - 1] = True
    for start in range(0, len(rows), CHUNK):
        yield _packets(table, tracks, rows[start : start + CHUNK], closing[start : start + CHUNK])


def _packets(table: _Table, tracks: np.ndarray, rows: np.ndarray, closing: np.ndarray) -> bytes:
    """The framed packets of the events ``rows`` (``closing``: the END of a span rather than its BEGIN)."""
    c = table.columns
    kind = np.where(closing, END, c["kind"][rows])
    ts = c["ts"][rows] + np.where(closing, c["dur"][rows], 0)
    named = (kind == SPAN) | (kind == INSTANT)
    n = len(rows)
    cat, arg, number, value, extra = (c[name][rows] for name in ("cat", "arg", "number", "value", "extra"))
    fields: list[pc.Field] = [
        pc.Varint(3, cat, named & (cat > 0)),
        pc.Message(4, [pc.Varint(1, arg), pc.Varint(4, number)], named & (arg > 0)),
    ]
    with_extra = np.flatnonzero(named & (extra >= 0))
    if len(with_extra):
        fields.append(pc.Encoded(n, with_extra, [table.extras[i] for i in extra[with_extra].tolist()]))
    fields += [
        pc.Varint(9, TYPES[kind]),
        pc.Varint(10, c["name"][rows], named),
        pc.Varint(11, tracks[rows]),
        pc.Double(44, value, kind == COUNTER),
    ]
    packet = [
        pc.Varint(8, ts),
        pc.Varint(10, np.full(n, SEQUENCE)),
        pc.Message(11, fields),
        pc.Varint(13, np.full(n, NEEDS_STATE)),
    ]
    return pc.encode([pc.Message(1, packet)])


def render(run: Run, out: IO[bytes]) -> None:
    """Write the Perfetto protobuf trace of ``run`` (the JSON trace's events, see the module docstring)."""
    pb = _protos()
    items, other = trace_items(run)
    writer = _Writer(pb)
    _describe(writer, items)
    run_event = writer.packet()
    run_event.timestamp = 0
    run_event.track_event.type = pb.TrackEvent.TYPE_INSTANT
    run_event.track_event.track_uuid = writer.track(PID_RUN, -1)
    run_event.track_event.name_iid = writer.iid("event_names", "llmprof run")
    run_event.track_event.category_iids.append(writer.iid("event_categories", "run"))
    run_event.track_event.MergeFromString(writer.annotations(other))
    table = _Table(writer, items)
    tracks = _tracks(writer, table, items)
    writer.packets.append(writer.packets.pop(writer.packets.index(run_event)))  # after every descriptor
    out.write(writer.head())
    for chunk in _events(table, tracks):
        out.write(chunk)
