"""The Perfetto protobuf trace: decoded back with Perfetto's own protos and checked as the trace processor
reads it (tracks described before use, interned names defined before use, slices nested on each track), and
against the JSON trace of the same run: the same slices, instants and counters, to the nanosecond."""

import json
import subprocess
import sys
from collections import Counter

import pytest
from test_trace import cuda_marks, cuda_run, host_run, nvml_snapshot
from timelines import MS, host_marks, record

from llmprof.analysis.record import Label
from llmprof.cli import main
from llmprof.report import render
from llmprof.report.trace import build_trace
from llmprof.runfile import Run

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")


def packets(data: bytes) -> list[bytes]:
    """The trace's packets as written: each ``Trace.packet`` field's bytes (tag 0x0a, varint length)."""
    out, at = [], 0
    while at < len(data):
        assert data[at] == 0x0A
        length, shift, at = 0, 0, at + 1
        while True:
            byte = data[at]
            length |= (byte & 0x7F) << shift
            shift, at = shift + 7, at + 1
            if byte < 0x80:
                break
        out.append(data[at : at + length])
        at += length
    return out


def decode(data: bytes) -> dict:
    """The trace's slices, instants and counters as (track, name, ...) tuples, checking as it reads (and
    that every packet is encoded byte for byte as the protobuf library encodes it)."""
    trace = pb.Trace.FromString(data)
    written = packets(data)
    assert [p.SerializeToString() for p in trace.packet] == written
    assert trace.packet[0].sequence_flags == pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    names: dict[int, str] = {}  # iid -> string, every interned table (their iids do not collide)
    tracks: dict[int, str] = {}
    stacks: dict[int, list] = {}
    out = {"slices": [], "instants": [], "counters": [], "run": None}
    last = 0
    for packet in trace.packet:
        assert packet.trusted_packet_sequence_id == 1
        for table in ("event_names", "event_categories", "debug_annotation_names"):
            for entry in getattr(packet.interned_data, table):
                assert entry.iid not in names
                names[entry.iid] = entry.name
        if packet.HasField("track_descriptor"):
            d = packet.track_descriptor
            assert d.uuid not in tracks and (not d.parent_uuid or d.parent_uuid in tracks)
            tracks[d.uuid] = d.process.process_name if d.HasField("process") else d.name
            continue
        e = packet.track_event
        assert e.track_uuid in tracks and packet.timestamp >= last  # in time order
        last = packet.timestamp
        track = tracks[e.track_uuid]
        if e.type == pb.TrackEvent.TYPE_SLICE_END:
            name, start, args = stacks[e.track_uuid].pop()  # closes the slice opened last on its track
            out["slices"].append((track, name, start, packet.timestamp))
            continue
        args = {names[a.name_iid]: getattr(a, a.WhichOneof("value")) for a in e.debug_annotations}
        if e.type == pb.TrackEvent.TYPE_COUNTER:
            out["counters"].append((track, packet.timestamp, e.double_counter_value))
        elif e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            stacks.setdefault(e.track_uuid, []).append((names[e.name_iid], packet.timestamp, args))
        elif names[e.name_iid] == "llmprof run":
            out["run"] = args
        else:
            assert e.type == pb.TrackEvent.TYPE_INSTANT
            out["instants"].append(
                (track, names[e.name_iid], packet.timestamp, args.get("sequences generating"))
            )
    assert not any(stacks.values())  # every slice closed
    return out


def expected(run: Run) -> dict:
    """The same tuples from the JSON trace of ``run``."""
    document = build_trace(run)
    events = document["traceEvents"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    ns = lambda us: round(us * 1000)
    out = {"slices": [], "instants": [], "counters": [], "run": document["otherData"]}
    for e in events:
        if e["ph"] == "X":
            name = threads[e["pid"], e["tid"]]
            out["slices"].append((name, e["name"], ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])))
        elif e["ph"] == "i":
            name = threads[e["pid"], e["tid"]]
            out["instants"].append((name, e["name"], ns(e["ts"]), e["args"].get("sequences generating")))
        elif e["ph"] == "C":
            out["counters"] += [(f"{e['name']} [{s}]", ns(e["ts"]), float(v)) for s, v in e["args"].items()]
    return out


NESTED = {"model": "nested"}


def plain(track: str) -> str:
    """The thread a track of overlapping spans stands beside."""
    return track.split(" (overlapping")[0]


def vision_run() -> Run:
    """Nested spans (the vision encoder inside host prep) and a zero-length one (a clipped host gap)."""
    marks = cuda_marks(3, start=0.0)
    marks = [(m[0], m[1], m[2], m[3] - 1.0) if (m[0], m[1]) == (Label.FORWARD_BEGIN, 1) else m for m in marks]
    records = [record(host_marks(2, start=0.0, vision=7.0), [2]), record(marks, [3], backend="cuda")]
    for raw in records[1:]:  # after the first request
        raw.host_ns = [t + 1000 * MS for t in raw.host_ns]
        raw.device_ns = [None if t is None else t + 1000 * MS for t in raw.device_ns]
    return Run(config=NESTED, environment={}, records=records)


def kernels_run() -> Run:
    """A kernel capture: operators nested on their thread, kernels on the device's, a step in each's args."""
    from test_kernels import gpu_trace

    from llmprof.capture.kernels import from_kineto

    raw = record(host_marks(10), [10])
    doc, stamps = gpu_trace(raw, 10)
    return Run(config={}, environment={}, records=[raw], kernels=from_kineto(doc, raw, stamps, 4))


@pytest.mark.parametrize(
    "make",
    [lambda: host_run(telemetry=nvml_snapshot(round(100.0 * MS))), cuda_run, vision_run, kernels_run],
    ids=["host+telemetry", "cuda", "nested+zero-length", "kernels"],
)
def test_the_perfetto_trace_holds_exactly_the_json_traces_events(make):
    run = make()
    got, want = decode(render(run, "perfetto")), expected(run)
    moved = [s for s in got["slices"] if "(overlapping" in s[0]]
    # the clipped host gap's forward starts 1 ms before the sampling span before it ends: beside it
    assert [s[:2] for s in moved] == (
        [("device (overlapping 1)", "decode 2")] if run.config == NESTED else []
    )
    got["slices"] = [(plain(track), *rest) for track, *rest in got["slices"]]
    for kind in ("slices", "instants", "counters"):
        assert Counter(got[kind]) == Counter(want[kind]), kind
    assert got["slices"] and got["instants"] and bool(got["counters"]) == (run.telemetry is not None)
    assert got["run"] == want["run"]


def test_spans_that_share_a_start_or_an_end_nest_in_the_order_written():
    """Spans one inside the other with the same start, the same end, or both, and zero-length ones at the
    same time: each END closes the span opened last on its track (``decode`` would fail if not)."""
    import numpy as np

    from llmprof.report.perfetto_trace import _lanes, _timeline

    spans = [(0, 10), (0, 4), (4, 10), (4, 4), (10, 10), (2, 3), (2, 3)]
    ts = np.array([s for s, _ in spans])
    dur = np.array([e - s for s, e in spans])
    order, ends = _timeline(ts, dur)
    assert _lanes(
        np.zeros(len(spans), dtype=np.int64), ts, dur, np.ones(len(spans), dtype=bool)
    ).tolist() == [0] * len(spans)
    stack, closed = [], []
    for i, end in zip(order.tolist(), ends.tolist()):
        if end:
            assert stack.pop() == i
            closed.append(i)
        elif dur[i] == 0:
            closed.append(i)  # written whole
        else:
            stack.append(i)
    assert not stack and sorted(closed) == list(range(len(spans)))


def test_a_span_that_overlaps_without_nesting_goes_to_a_track_beside_its_thread():
    """Two requests at the same time (a recorder's overlapping calls): the second's spans cannot nest in the
    first's, so they are drawn on "host (overlapping 1)" and "requests (overlapping 1)", none lost."""
    records = [record(host_marks(3, start=0.0), [3]), record(host_marks(3, start=5.0), [3])]
    run = Run(config={}, environment={}, records=records)
    got, want = decode(render(run, "perfetto")), expected(run)
    moved = Counter(track for track, *_ in got["slices"] if "overlapping" in track)
    assert set(moved) == {"host (overlapping 1)", "requests (overlapping 1)"}
    assert Counter((plain(t), *rest) for t, *rest in got["slices"]) == Counter(want["slices"])


def test_a_rank_whose_device_time_precedes_every_request_start_still_starts_at_zero_or_later():
    """Rank 1's first forward mapped 0.5 ms before its request's start (within its sync uncertainty): the
    trace's zero moves to it, in the JSON as in the protobuf (whose times cannot be negative)."""
    from llmprof.analysis.ranks import RankTimeline

    def shifted(start):
        marks = cuda_marks(3, start=start)
        return [
            (m[0], m[1], m[2], m[3] - 2.5) if (m[0], m[1]) == (Label.FORWARD_BEGIN, 0) else m for m in marks
        ]

    zero = record(cuda_marks(3, start=50.0), [3], backend="cuda")
    one = record(shifted(50.0), [3], backend="cuda")
    run = Run(config={}, environment={}, records=[zero])
    run.ranks = [RankTimeline(0, "a", records=[zero]), RankTimeline(1, "b", records=[one])]
    events = build_trace(run)["traceEvents"]
    assert min(e["ts"] for e in events if "ts" in e) == 0.0
    got = decode(render(run, "perfetto"))
    assert min(start for _, _, start, _ in got["slices"]) == 0


def test_it_is_several_times_smaller_than_the_json_trace():
    records = [record(host_marks(200, start=1000.0 * i), [200]) for i in range(20)]
    run = Run(config={"model": "big"}, environment={}, records=records)
    assert len(render(run, "trace")) > 2.2 * len(render(run, "perfetto"))  # 2.5x measured


def test_the_format_needs_a_file_and_the_perfetto_package(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(render(host_run(), "json"))
    assert main(["report", str(path), "--format", "perfetto"]) == 2
    assert "--format perfetto writes a binary Perfetto trace: give it a file" in capsys.readouterr().err
    code = (
        "import sys; sys.modules['perfetto'] = None; from llmprof.cli import main; "
        f"raise SystemExit(main(['report', {str(path)!r}, '--format', 'perfetto', '-o', {str(tmp_path / 't')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "pip install 'llmprof[perfetto]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "t").exists()
    assert main(["report", str(path), "--format", "perfetto", "-o", str(tmp_path / "t.pftrace")]) == 0
    assert decode((tmp_path / "t.pftrace").read_bytes())["slices"]
    assert json.loads(render(host_run(), "json"))  # the plain formats do not need it


def test_the_packets_are_the_same_encoded_a_few_at_a_time(monkeypatch):
    """The event packets are encoded in chunks: chunks of 7 give the same bytes as one chunk."""
    from llmprof.report import perfetto_trace

    run = host_run(telemetry=nvml_snapshot(round(100.0 * MS)))
    whole = render(run, "perfetto")
    monkeypatch.setattr(perfetto_trace, "CHUNK", 7)
    assert render(run, "perfetto") == whole and len(decode(whole)["slices"]) > 7


def test_a_huge_step_and_a_mark_before_the_request_start_are_written_exactly():
    """A step past 2**53 keeps its exact int (not a double's); a host mark before its request's start moves the
    trace's zero there (a Perfetto timestamp is unsigned), in the JSON as in the protobuf."""
    raw = record(host_marks(3, start=10.0), [3])
    big = 2**53 + 1
    raw.step = [big if (label, step) == (Label.FORWARD_BEGIN, 2) or (label, step) == (Label.FORWARD_END, 2)
                else step for label, step in zip(raw.label, raw.step)]  # fmt: skip
    raw.host_ns[1] = raw.host_ns[0] - 3 * MS  # the mark after the start stamped before it
    raw.__dict__.pop("marks", None)
    run = Run(config={}, environment={}, records=[raw])
    data = render(run, "perfetto")
    steps = [a.int_value for p in pb.Trace.FromString(data).packet for a in p.track_event.debug_annotations]
    assert big in steps
    events = build_trace(run)["traceEvents"]
    assert min(e["ts"] for e in events if "ts" in e) == 0.0
    assert min(start for _, _, start, _ in decode(data)["slices"]) == 0
