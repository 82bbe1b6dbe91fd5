"""The run file: the :class:`Run` model, its versioned JSON format, validation on load, and the atomic write.

A run file holds every raw timeline plus the run's configuration, environment, telemetry and roofline inputs;
every metric is recomputed from the raw timelines on load, so a file stays useful when metrics are added.
A format change that old files cannot be read through bumps ``FORMAT_VERSION`` and adds the migration of the
older documents here. Version 2 stores each request's marks compact (:data:`MARKS_ENCODING`) and writes one
request a line; a version-1 document is a version-2 document whose marks are plain arrays (still read, and
still written by ``report --format json`` for tools that want plain JSON). Never imports torch.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
import math
import os
import stat
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from llmprof.analysis import registry
from llmprof.analysis.kernels import KernelCapture, check_capture
from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.ranks import RankTimeline
from llmprof.analysis.record import Label, RawRequest
from llmprof.analysis.roofline import ModelShape, Peaks, RequestRoofline, Roofline
from llmprof.analysis.stats import Summary
from llmprof.errors import RunFormatError

T = TypeVar("T")
FORMAT_NAME = "llmprof-run"
FORMAT_VERSION = 2
# a request's marks in a run file: the columns label, step, host_ns and device_ns (-1 where a mark has no
# device time), each as its first value then the differences of consecutive values, little-endian int64,
# one column after the other, zlib-compressed, then base64 (the differences are small: 3-4x smaller files)
MARKS_ENCODING = "delta-int64-zlib-base64"
MARK_COLUMNS = ("label", "step", "host_ns", "device_ns")
# compact marks decoded from one document at most (zlib inflates up to ~1000x: a small file may not claim more
# than this); 5.8x the issue-17 case of 60 requests of 16k steps at batch 64 (2.9M marks)
MAX_COMPACT_MARKS = 2**24


@dataclass
class Run:
    """One profiling run: its configuration, environment and every recorded request (warm-ups included)."""

    config: dict[str, Any]
    environment: dict[str, Any]
    records: list[RawRequest] = field(default_factory=list)
    telemetry: dict[str, Any] | None = None  # a sampler snapshot (llmprof.capture.sampling), None when off
    roofline: dict[str, Any] | None = (
        None  # llmprof.analysis.roofline.Roofline.to_dict(); None when not known
    )
    kernels: KernelCapture | None = None  # the kernel-profiled call after the repeats (run --kernels)
    # several ranks of one job (torchrun): every rank's timeline, rank 0 first (its records are ``records``)
    ranks: list[RankTimeline] | None = None
    interrupted: bool = False
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat())
    # each record's metrics, computed once (records are not changed once recorded): id -> (record, metrics)
    _computed: dict[int, tuple[RawRequest, RequestMetrics]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # the summaries of the measured records they were computed from: (records, summaries)
    _summaries: tuple[list[RawRequest], dict[str, Summary]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def measured(self) -> list[RawRequest]:
        """The repeats that count (warm-ups excluded)."""
        return [r for r in self.records if not r.warmup]

    def metrics(self) -> list[RequestMetrics]:
        """Metrics of the measured repeats, in order (each computed once per run)."""
        return [self.request_metrics(r) for r in self.measured]

    def summaries(self) -> dict[str, Summary]:
        """Every request metric summarized over the measured repeats: computed once for as long as the
        measured records stay the same (every format of one render, and the next, share them)."""
        measured = self.measured
        cached = self._summaries
        if (
            cached is None
            or len(cached[0]) != len(measured)
            or any(a is not b for a, b in zip(cached[0], measured))
        ):
            self._summaries = cached = (measured, registry.summaries(self.metrics()))
        return cached[1]

    def request_metrics(self, record: RawRequest) -> RequestMetrics:
        """``compute_request(record)``, computed once per record of this run."""
        hit = self._computed.get(id(record))
        if hit is None or hit[0] is not record:
            hit = self._computed[id(record)] = (record, compute_request(record))
        return hit[1]

    def roofline_analyses(self) -> list[RequestRoofline]:
        """The measured repeats against the roofline, in order; empty when the run has no roofline."""
        if self.roofline is None:
            return []
        roofline = Roofline.from_dict(self.roofline)
        return [roofline.analyze(m) for m in self.metrics()]

    def to_dict(self, compact: bool = False) -> dict[str, Any]:
        """The JSON document of the run (see :func:`dump_run`); ``compact``: each request's marks encoded
        (:data:`MARKS_ENCODING`), else plain arrays."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": self.created,
            "interrupted": self.interrupted,
            "config": self.config,
            "environment": self.environment,
            "telemetry": self.telemetry,
            "roofline": self.roofline,
            "requests": [request_dict(r, compact) for r in self.records],
            **({"kernels": self.kernels.to_dict()} if self.kernels is not None else {}),
            **(
                {"ranks": [_rank_dict(t, t.rank == self.ranks[0].rank, compact) for t in self.ranks]}
                if self.ranks
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Parse a run document, validated whole (:func:`check_document`); raises RunFormatError naming the
        first field that is wrong."""
        check_document(data)
        records = [RawRequest.from_dict(r) for r in data["requests"]]
        check_config(data.get("config", {}), records)
        computed = {id(r): (r, _physical(r, f"requests[{i}]")) for i, r in enumerate(records)}
        run = cls(
            config=dict(data.get("config", {})),
            environment=dict(data.get("environment", {})),
            records=records,
            telemetry=data.get("telemetry"),
            roofline=data.get("roofline"),
            kernels=KernelCapture.from_dict(data["kernels"]) if data.get("kernels") is not None else None,
            ranks=_ranks(data["ranks"], records) if data.get("ranks") else None,
            interrupted=data.get("interrupted", False),
            created=data.get("created", ""),
        )
        run._computed = computed
        return run


def request_dict(record: RawRequest, compact: bool) -> dict[str, Any]:
    """A request's entry in the file; ``compact``: its marks encoded (:data:`MARKS_ENCODING`)."""
    data = record.to_dict()
    if compact:
        data["marks"] = encode_marks(data["marks"])
    return data


def encode_marks(marks: dict[str, list[Any]]) -> dict[str, Any]:
    """Plain mark columns -> their compact form (:data:`MARKS_ENCODING`)."""
    device = marks["device_ns"]
    columns = np.array(
        [marks["label"], marks["step"], marks["host_ns"], [-1 if d is None else d for d in device]],
        dtype=np.int64,
    ).reshape(len(MARK_COLUMNS), len(device))
    # int64 arithmetic wraps: a difference past the range comes back exactly through the running sum
    deltas = np.diff(columns, axis=1, prepend=0).astype("<i8")
    return {
        "encoding": MARKS_ENCODING,
        "count": len(device),
        "data": base64.b64encode(zlib.compress(deltas.tobytes(), 6)).decode("ascii"),
    }


def _rank_dict(timeline: RankTimeline, first: bool, compact: bool) -> dict[str, Any]:
    """A rank's entry in the file: the first rank's records are the run's ``requests``, not repeated."""
    entry = {
        "rank": timeline.rank,
        "hostname": timeline.hostname,
        "offset_ns": timeline.offset_ns,
        "uncertainty_ns": timeline.uncertainty_ns,
    }
    return entry if first else {**entry, "requests": [request_dict(r, compact) for r in timeline.records]}


def _ranks(entries: list[dict[str, Any]], records: list[RawRequest]) -> list[RankTimeline]:
    """The ranks' timelines of a checked document: the first has the run's records, the others their own."""
    first = entries[0]
    out = [
        RankTimeline(first["rank"], first["hostname"], first["offset_ns"], first["uncertainty_ns"], records)
    ]
    for i, e in enumerate(entries[1:], 1):
        timeline = RankTimeline(e["rank"], e["hostname"], e["offset_ns"], e["uncertainty_ns"])
        for j, request in enumerate(e["requests"]):
            timeline.records.append(RawRequest.from_dict(request))
            _physical(timeline.records[-1], f"ranks[{i}].requests[{j}]")
        out.append(timeline)
    return out


def _physical(record: RawRequest, where: str) -> RequestMetrics:
    """``record``'s metrics if they can be computed and are physical; RunFormatError naming ``where`` if not."""
    try:
        m = compute_request(record)
    except (ValueError, ZeroDivisionError) as exc:
        raise RunFormatError(f"{MALFORMED}{where}: {exc}") from None
    _check_physical(m, where)
    return m


# -- validation on load ------------------------------------------------------------------------------------
MAX_NS = 2**63 - 1
# a peak (B/s, FLOP/s) a file may claim: 10^8 times today's largest GPU, and 1 at least; every figure divided by
# it, or formatted from it, stays a finite float
PEAK_RANGE = (1.0, 1e24)
MAX_DEPTH = 32  # a run file nests a few levels; deeper is not one
REQUEST_FIELDS: dict[str, tuple[type, ...]] = {  # optional fields of a request and their JSON types
    "prefill_tokens": (int, type(None)),
    "cached_tokens": (int,),
    "backend": (str,),
    "sync_uncertainty_ns": (int,),
    "warmup": (bool,),
    "telemetry": (dict,),
    "warnings": (list,),
    "tokens_per_step": (list, type(None)),
    "drafted_per_step": (list, type(None)),
    "device_forward_ends": (dict,),
}


MALFORMED = "malformed llmprof run: "  # what every field's error begins with


def _fail(where: str, what: str) -> RunFormatError:
    return RunFormatError(f"{MALFORMED}{where}: {what}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _int(value: Any, where: str, low: int = 0, high: int = MAX_NS) -> int:
    """``value`` if it is an integer (not a bool, not a float) within low..high."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"an integer is needed, not {_type_name(value)} {value!r:.40}")
    if not low <= value <= high:
        raise _fail(where, f"{value} is out of range ({low}..{high})")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    """``value`` if it is a number (an integer or a float, not a bool) within low..high (NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"a number is needed, not {_type_name(value)} {value!r:.40}")
    if not low <= value <= high:
        raise _fail(where, f"{value!r:.20} is out of range ({low:g}..{high:g})")
    return value


def _ints(values: Any, where: str, low: int = 0, high: int = MAX_NS, optional: bool = False) -> list[Any]:
    if not isinstance(values, list):
        raise _fail(where, f"a list is needed, not {_type_name(values)}")
    for i, value in enumerate(values):
        if not (optional and value is None):
            _int(value, f"{where}[{i}]", low, high)
    return values


def _walk(value: Any, where: str, depth: int = 0) -> None:
    """Every string encodable, every number finite, nothing nested deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise _fail(where, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(where, "a string that is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise _fail(where, f"{value} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, where, depth + 1)
            _walk(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        if all(type(item) is int for item in value):  # a column of integers (the marks): nothing to walk
            return
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]", depth + 1)


def check_document(data: Any) -> None:
    """Validate a run document whole, warm-ups included: its format and version, the types of every field,
    finite numbers, and each request's marks (known labels, times on the clock, in order) and token counts
    (positive, within the request's own marks). Raises RunFormatError naming the first field that is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise RunFormatError("not an llmprof run (no 'format': 'llmprof-run' field)")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunFormatError(
            f"run format version {version!r:.20} is not a version number: this llmprof writes {FORMAT_VERSION}"
        )
    if version > FORMAT_VERSION:
        raise RunFormatError(
            f"run format version {version} is newer than this llmprof reads ({FORMAT_VERSION}); upgrade llmprof"
        )
    if version < 1:
        raise RunFormatError(
            f"run format version {version} does not exist (this llmprof writes {FORMAT_VERSION})"
        )
    _walk(data, "")
    _check_compact_total(data)
    for key, kinds in (
        ("config", (dict,)),
        ("environment", (dict,)),
        ("interrupted", (bool,)),
        ("created", (str,)),
        ("telemetry", (dict, type(None))),
        ("roofline", (dict, type(None))),
        ("requests", (list,)),
    ):
        if key in data and not isinstance(data[key], kinds):
            names = "/".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
            raise _fail(key, f"{names} is needed, not {_type_name(data[key])}")
    if "requests" not in data:
        raise _fail("requests", "missing")
    for i, request in enumerate(data["requests"]):
        _check_request(request, f"requests[{i}]")
    if data.get("telemetry") is not None:
        _check_telemetry(data["telemetry"])
    if data.get("roofline") is not None:
        _check_roofline(data["roofline"])
    if data.get("kernels") is not None:
        check_capture(data["kernels"])
        if data["kernels"].get("request") is not None:
            _check_request(data["kernels"]["request"], "kernels.request")
    if data.get("ranks") is not None:
        _check_ranks(data["ranks"])


def _check_compact_total(data: dict[str, Any]) -> None:
    """The compact marks a document claims, all requests together, before any is inflated: at most
    MAX_COMPACT_MARKS (a malformed count is the field check's to name)."""

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else []

    requests = list(listed(data.get("requests")))
    for entry in listed(data.get("ranks")):
        requests += listed(entry.get("requests")) if isinstance(entry, dict) else []
    kernels = data.get("kernels")
    if isinstance(kernels, dict) and kernels.get("request") is not None:
        requests.append(kernels["request"])
    total = 0
    for request in requests:
        marks = request.get("marks") if isinstance(request, dict) else None
        count = marks.get("count") if isinstance(marks, dict) and "encoding" in marks else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            total += count
    if total > MAX_COMPACT_MARKS:
        raise RunFormatError(
            f"{MALFORMED}its requests claim {total} marks, more than one file may hold ({MAX_COMPACT_MARKS})"
        )


def _check_ranks(ranks: Any) -> None:
    """The ranks of a distributed run: rank 0's entry without requests (they are the run's), each other's
    with its own, distinct rank numbers, clock offsets as integers."""
    if not isinstance(ranks, list) or not ranks:
        raise _fail("ranks", f"a non-empty list is needed, not {_type_name(ranks)}")
    seen = set()
    for i, entry in enumerate(ranks):
        where = f"ranks[{i}]"
        if not isinstance(entry, dict):
            raise _fail(where, f"an object is needed, not {_type_name(entry)}")
        for key in ("rank", "hostname", "offset_ns", "uncertainty_ns"):
            if key not in entry:
                raise _fail(f"{where}.{key}", "missing")
        rank = _int(entry["rank"], f"{where}.rank", 0, 2**20)
        if rank in seen:
            raise _fail(f"{where}.rank", f"rank {rank} is listed twice")
        seen.add(rank)
        if not isinstance(entry["hostname"], str):
            raise _fail(f"{where}.hostname", f"a string is needed, not {_type_name(entry['hostname'])}")
        _int(entry["offset_ns"], f"{where}.offset_ns", -MAX_NS, MAX_NS)
        _int(entry["uncertainty_ns"], f"{where}.uncertainty_ns")
        if i == 0 and "requests" in entry:
            raise _fail(f"{where}.requests", "the first rank's requests are the run's: not repeated")
        if i > 0:
            if not isinstance(entry.get("requests"), list):
                raise _fail(f"{where}.requests", "a list is needed")
            for j, request in enumerate(entry["requests"]):
                _check_request(request, f"{where}.requests[{j}]")


SHAPE_PARTS = (  # (part, whole) of a model's shape: a part larger makes bytes negative, or (1 - k/E)^n overflow
    ("experts_per_token", "experts"),
    ("sliding_layers", "layers"),
    ("expert_bytes", "weight_bytes"),
)


def _check_roofline(roofline: dict[str, Any]) -> None:
    """The model's shape (non-negative integers, its cache dtype a string) and the peaks (positive, finite)."""
    for part, kind in (("model", ModelShape), ("peaks", Peaks)):
        value = roofline.get(part)
        if not isinstance(value, dict):
            raise _fail(f"roofline.{part}", f"an object is needed, not {_type_name(value)}")
        for spec in dataclasses.fields(kind):
            where = f"roofline.{part}.{spec.name}"
            if spec.name not in value:
                if spec.default is dataclasses.MISSING:
                    raise _fail(where, "missing")
                continue
            item = value[spec.name]
            if "str" in str(spec.type):
                if not isinstance(item, str):
                    raise _fail(where, f"a string is needed, not {_type_name(item)}")
            elif "float" in str(spec.type):
                _number(item, where, *PEAK_RANGE)
            elif not ("None" in str(spec.type) and item is None):
                _int(item, where)
        unknown = set(value) - {f.name for f in dataclasses.fields(kind)}
        if unknown:
            raise _fail(f"roofline.{part}", f"unknown fields {sorted(unknown)}")
    model = roofline["model"]
    for part, whole in SHAPE_PARTS:
        if model.get(part, 0) > model.get(whole, 0):
            raise _fail(
                f"roofline.model.{part}", f"{model[part]} is more than its {whole} ({model.get(whole, 0)})"
            )


def _check_request(request: Any, where: str) -> None:
    """One request of a document; its compact marks are decoded in place (plain columns for ``from_dict``)."""
    if not isinstance(request, dict):
        raise _fail(where, f"an object is needed, not {_type_name(request)}")
    marks = request.get("marks")
    if not isinstance(marks, dict):
        raise _fail(
            f"{where}.marks", "missing" if marks is None else f"an object is needed, not {_type_name(marks)}"
        )
    if "encoding" in marks:
        columns = request["marks"] = _decoded_marks(marks, f"{where}.marks")
    else:
        columns = _plain_marks(marks, f"{where}.marks")
    tokens = columns["label"].count(Label.TOKEN)
    per_step = request.get("tokens_per_step")
    most = tokens if per_step is None else sum(_ints(per_step, f"{where}.tokens_per_step", 1))
    counts = request.get("tokens_per_sequence")
    if counts is None:
        raise _fail(f"{where}.tokens_per_sequence", "missing")
    if not _ints(counts, f"{where}.tokens_per_sequence", 1):
        raise _fail(f"{where}.tokens_per_sequence", "empty: a request has at least one sequence")
    if max(counts) > most:
        raise _fail(f"{where}.tokens_per_sequence", f"{max(counts)} tokens, more than its {most} token marks")
    _int(request.get("prompt_tokens"), f"{where}.prompt_tokens")
    for key, kinds in REQUEST_FIELDS.items():
        if key in request and not isinstance(request[key], kinds):
            raise _fail(f"{where}.{key}", f"{_type_name(request[key])} is not its type")
    if request.get("backend", "host") not in ("host", "cuda"):
        raise _fail(f"{where}.backend", f"{request['backend']!r:.20} is no timeline backend (host, cuda)")
    if request.get("prefill_tokens") is not None:
        _int(request["prefill_tokens"], f"{where}.prefill_tokens")
    if "cached_tokens" in request:
        _int(request["cached_tokens"], f"{where}.cached_tokens")
        if request["cached_tokens"] >= request["prompt_tokens"]:
            raise _fail(f"{where}.cached_tokens", "not fewer than the prompt's tokens: nothing was prefilled")
    for key, value in request.get(
        "telemetry", {}
    ).items():  # its counters (energy, peak bytes, CPU) and a note
        if key.endswith("_note"):
            if not isinstance(value, (str, type(None))):
                raise _fail(f"{where}.telemetry.{key}", f"a string is needed, not {_type_name(value)}")
        elif value is not None:
            _number(value, f"{where}.telemetry.{key}", -MAX_NS, MAX_NS)
    if not all(isinstance(w, str) for w in request.get("warnings", [])):
        raise _fail(f"{where}.warnings", "a list of strings is needed")
    if request.get("drafted_per_step") is not None:
        _ints(request["drafted_per_step"], f"{where}.drafted_per_step")
    if "device_forward_ends" in request:
        _check_device_ends(request["device_forward_ends"], columns["label"], f"{where}.device_forward_ends")


def _plain_marks(marks: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """The plain mark columns (arrays of integers) checked: known labels, host stamps in order."""
    columns = {}
    for name in MARK_COLUMNS:
        if name not in marks:
            raise _fail(f"{where}.{name}", "missing")
        columns[name] = _ints(marks[name], f"{where}.{name}", optional=name == "device_ns")
    if len({len(c) for c in columns.values()}) != 1:
        raise _fail(where, "its columns have different lengths")
    known = {int(label) for label in Label}
    for j, label in enumerate(columns["label"]):
        if label not in known:
            raise _fail(f"{where}.label[{j}]", f"{label} is no mark llmprof records")
    host = columns["host_ns"]
    for j in range(1, len(host)):
        if host[j] < host[j - 1]:
            raise _fail(f"{where}.host_ns[{j}]", "not monotone (earlier than the mark before it)")
    return columns


def _decoded_marks(marks: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """Compact marks (:data:`MARKS_ENCODING`) -> the plain columns, checked as :func:`_plain_marks` checks
    them (in one numpy pass a column)."""
    if marks["encoding"] != MARKS_ENCODING:
        raise _fail(
            f"{where}.encoding",
            f"{marks['encoding']!r:.40} is no encoding this llmprof reads ({MARKS_ENCODING})",
        )
    count = _int(marks.get("count"), f"{where}.count", 0, 2**40)
    data = marks.get("data")
    if not isinstance(data, str):
        raise _fail(f"{where}.data", f"a string is needed, not {_type_name(data)}")
    size = len(MARK_COLUMNS) * 8 * count
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(base64.b64decode(data, validate=True), size + 1)  # never more than needed
    except (binascii.Error, zlib.error, ValueError) as exc:  # ValueError: a character that is not ASCII
        raise _fail(f"{where}.data", f"not base64 of zlib data ({exc})") from None
    if len(raw) != size or not inflate.eof:
        raise _fail(f"{where}.data", f"does not hold {count} marks (truncated?)")
    label, step, host, device = np.cumsum(np.frombuffer(raw, "<i8").reshape(len(MARK_COLUMNS), count), axis=1)
    bad = np.flatnonzero(~np.isin(label, [int(known) for known in Label]))
    if bad.size:
        raise _fail(f"{where}.label[{bad[0]}]", f"{label[bad[0]]} is no mark llmprof records")
    for name, column, low in (("step", step, 0), ("host_ns", host, 0), ("device_ns", device, -1)):
        bad = np.flatnonzero(column < low)
        if bad.size:
            raise _fail(
                f"{where}.{name}[{bad[0]}]", f"{column[bad[0]]} is out of range ({max(low, 0)}..{MAX_NS})"
            )
    bad = np.flatnonzero(np.diff(host) < 0)
    if bad.size:
        raise _fail(f"{where}.host_ns[{bad[0] + 1}]", "not monotone (earlier than the mark before it)")
    devices = [None] * count if (device < 0).all() else [None if d < 0 else d for d in device.tolist()]
    return {"label": label.tolist(), "step": step.tolist(), "host_ns": host.tolist(), "device_ns": devices}


def _check_device_ends(ends: dict[str, Any], labels: list[int], where: str) -> None:
    """A device_map model's per-GPU forward ends: two GPUs or more, one time each per forward end."""
    if len(ends) < 2:
        raise _fail(where, "fewer than two devices (a model on one device has none)")
    count = labels.count(Label.FORWARD_END)
    for device, times in ends.items():
        if len(_ints(times, f"{where}.{device}")) != count:
            raise _fail(f"{where}.{device}", f"{len(times)} times for {count} forward ends")


def _check_telemetry(telemetry: dict[str, Any]) -> None:
    """The sampler snapshot: columns of samples, each a list as long as the time column."""
    for block in ("samples", "buffered"):
        series = telemetry.get(block)
        if series is None:
            continue
        if not isinstance(series, dict) or not all(isinstance(c, list) for c in series.values()):
            raise _fail(f"telemetry.{block}", "an object of lists is needed")
        times = series.get("t_ns", [])
        _ints(times, f"telemetry.{block}.t_ns", optional=True)
        for name, column in series.items():
            if len(column) != len(times):
                raise _fail(f"telemetry.{block}.{name}", "not as long as its t_ns column")
            if name not in ("t_ns", "device", "field"):
                for j, v in enumerate(column):
                    if v is not None:
                        _number(v, f"telemetry.{block}.{name}[{j}]", -MAX_NS, MAX_NS)
    for key in ("devices",):
        if key in telemetry and not (
            isinstance(telemetry[key], list) and all(isinstance(d, dict) for d in telemetry[key])
        ):
            raise _fail(f"telemetry.{key}", "a list of objects is needed")
    for key in ("kind", "reason", "power_source"):  # shown as text
        if not isinstance(telemetry.get(key, ""), (str, type(None))):
            raise _fail(f"telemetry.{key}", f"a string is needed, not {_type_name(telemetry[key])}")
    if telemetry.get("interval_s") is not None:
        _number(telemetry["interval_s"], "telemetry.interval_s", 0, 86400)


# what a run's config says of each request, and the least it may say (a sweep's depth may be 0)
CONFIG_MINIMUM = {"batch_size": 1, "prompt_tokens": 1, "depth": 0, "max_new_tokens": 1}


def check_config(
    config: dict[str, Any],
    records: list[RawRequest],
    where: str = "config",
    names: dict[str, str] | None = None,
) -> None:
    """``config``'s batch size, prompt tokens, depth and max_new_tokens (those it holds, each an integer)
    against what every request shows: its batch, its prompt less its cached tokens, its cached tokens, its
    longest sequence (no more than the limit). A decode loop of the user's own (``loop``) and continuous
    batching's requests (each its own batch and prompt) are not the config's to describe. ``names``: how the
    message calls each key (a sweep's axes); raises RunFormatError naming both values."""
    for key, low in CONFIG_MINIMUM.items():
        if key in config:
            _int(config[key], f"{where}.{(names or {}).get(key, key)}", low)
    if config.get("loop"):
        return
    shown = {  # what a request shows, as the message says it
        "batch_size": (lambda r: r.batch_size, "batch {}"),
        "prompt_tokens": (
            lambda r: r.prompt_tokens - r.cached_tokens,
            "{} prompt tokens (less the cached ones)",
        ),
        "depth": (lambda r: r.cached_tokens, "{} cached tokens"),
        "max_new_tokens": (lambda r: max(r.tokens_per_sequence), "{} tokens in a sequence"),
    }
    for i, record in enumerate(records):
        if any(w.startswith("continuous batching") for w in record.warnings):  # capture/batching.BATCHED
            continue
        for key, (of, what) in shown.items():
            value = of(record)
            if key in config and (value > config[key] if key == "max_new_tokens" else value != config[key]):
                raise _fail(
                    f"{where}.{(names or {}).get(key, key)}",
                    f"{config[key]}, but requests[{i}] has {what.format(value)}",
                )


def _check_physical(m: RequestMetrics, where: str) -> None:
    """What a real request cannot be: a negative time, a first token after the end."""
    if not 0 <= m.ttft <= m.latency:
        raise _fail(where, f"TTFT {m.ttft:.6g} s is not within 0..latency ({m.latency:.6g} s)")
    if any(v < 0 for v in m.itl):
        raise _fail(where, "a token earlier than the one before it")


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a truncated file. A symlink is
    followed (its target is replaced); a target that is not a regular file (a pipe, /dev/stdout) is written
    directly. The file gets the usual permissions (0666 less the umask), not the temporary file's 0600."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        regular = True  # a new file
    if not regular:  # a pipe, a terminal, /dev/stdout: streamed (its real path is no place for a rename)
        with open(path, "wb") as f:
            f.write(payload)
        return
    target = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_run(run: Run, compact: bool = True) -> str:
    """``run`` as JSON text: ``compact``, its marks encoded and one request a line (the run file); else
    plain arrays, indented (``report --format json``)."""
    if not compact:
        return json.dumps(run.to_dict(), indent=1) + "\n"
    return dump_lines(run.to_dict(compact=True))


def dump_lines(document: dict[str, Any]) -> str:
    """``document`` as JSON text with one top-level field a line, and one item a line in its lists of
    objects (the requests): a big file stays readable with ``less`` and ``grep``."""
    lines = []
    for key, value in document.items():
        name = json.dumps(key)
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            items = ",\n".join(json.dumps(item, separators=(",", ":")) for item in value)
            lines.append(f"{name}: [\n{items}\n]")
        else:
            lines.append(f"{name}: {json.dumps(value, separators=(',', ':'))}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save_run(run: Run, path: str | os.PathLike[str]) -> None:
    """Save ``run`` as JSON at ``path``, atomically."""
    write_atomic(path, dump_run(run))


def read_document(path: str | os.PathLike[str]) -> Any:
    """The JSON document at ``path`` (a run or a sweep); raises RunFormatError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_constant=_no_constant)
    except FileNotFoundError as exc:
        raise RunFormatError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise RunFormatError(f"{path}: is a directory") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise RunFormatError(f"{path}: not valid JSON (truncated?): {exc}") from exc
    except RecursionError:
        raise RunFormatError(f"{path}: nested too deeply to be an llmprof run") from None


def load_with(path: str | os.PathLike[str], build: Callable[[Any], T]) -> T:
    """``build`` of the document at ``path``; raises RunFormatError with a one-line reason naming the file."""
    data = read_document(path)
    try:
        return build(data)
    except RunFormatError as exc:
        raise RunFormatError(f"{path}: {exc}") from None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run saved by :func:`save_run`; raises RunFormatError with a one-line reason."""
    return load_with(path, Run.from_dict)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON has")
