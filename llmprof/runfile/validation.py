"""Validation of a run document on load (docs/architecture.md, "Where each thing lives"): its format and
version, the types of every field, finite numbers, each request's marks and token counts, the config against
the requests. Checking never changes the document: :func:`check_document` returns the requests' marks plain
in a new document (compact ones decoded once, checked as plain ones are)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from llmprof.analysis.engine_steps import check_engine, check_engine_steps
from llmprof.analysis.fields import (
    MALFORMED,
    MAX_NS,
    check_int,
    check_ints,
    check_number,
    fail,
    is_int,
    type_name,
)
from llmprof.analysis.kernels import check_capture
from llmprof.analysis.metrics import RequestMetrics
from llmprof.analysis.record import Label, RawRequest
from llmprof.analysis.roofline import ModelShape, Peaks
from llmprof.errors import RunFormatError
from llmprof.runfile.marks import MARK_COLUMNS, MAX_COMPACT_MARKS, decode_marks, plain_columns

FORMAT_NAME = "llmprof-run"
FORMAT_VERSION = 2
# a peak (B/s, FLOP/s) a file may claim: 10^8 times today's largest GPU, and 1 at least; every figure divided by
# it, or formatted from it, stays a finite float
PEAK_RANGE = (1.0, 1e24)
MAX_DEPTH = 32  # a run file nests a few levels; deeper is not one
DOCUMENT_FIELDS: dict[str, tuple[type, ...]] = {  # the run's own fields and their JSON types
    "config": (dict,),
    "environment": (dict,),
    "interrupted": (bool,),
    "created": (str,),
    "telemetry": (dict, type(None)),
    "roofline": (dict, type(None)),
    "requests": (list,),
    "engine_steps": (dict, type(None)),
}
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
    "engine": (dict, type(None)),
}
SHAPE_PARTS = (  # (part, whole) of a model's shape: a part larger makes bytes negative, or (1 - k/E)^n overflow
    ("experts_per_token", "experts"),
    ("sliding_layers", "layers"),
    ("expert_bytes", "weight_bytes"),
)
# what a run's config says of each request, and the least it may say (a sweep's depth may be 0)
CONFIG_MINIMUM = {"batch_size": 1, "prompt_tokens": 1, "depth": 0, "max_new_tokens": 1}


def check_document(data: Any) -> dict[str, Any]:
    """Validate a run document whole, warm-ups included: its format and version, the types of every field,
    finite numbers, and each request's marks (known labels, times on the clock, in order) and token counts
    (positive, within the request's own marks). Raises RunFormatError naming the first field that is wrong.
    Returns a new document (``data`` is never changed): the same fields, every request's marks plain."""
    _check_version(data)
    _walk(data, "")
    _check_compact_total(data)
    for key, kinds in DOCUMENT_FIELDS.items():
        if key in data and not isinstance(data[key], kinds):
            names = "/".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
            raise fail(key, f"{names} is needed, not {type_name(data[key])}")
    if "requests" not in data:
        raise fail("requests", "missing")
    plain = {
        **data,
        "requests": [_check_request(r, f"requests[{i}]") for i, r in enumerate(data["requests"])],
    }
    if data.get("telemetry") is not None:
        _check_telemetry(data["telemetry"])
    if data.get("roofline") is not None:
        _check_roofline(data["roofline"])
    kernels = data.get("kernels")
    if kernels is not None:
        check_capture(kernels)
        if kernels.get("request") is not None:
            plain["kernels"] = {**kernels, "request": _check_request(kernels["request"], "kernels.request")}
    if data.get("ranks") is not None:
        plain["ranks"] = _check_ranks(data["ranks"])
    if data.get("engine_steps") is not None:
        check_engine_steps(data["engine_steps"])
    return plain


def _check_version(data: Any) -> None:
    """An llmprof run of a format version this llmprof reads."""
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


def _walk(value: Any, where: str, depth: int = 0) -> None:
    """Every string encodable, every number finite, nothing nested deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise fail(where, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise fail(where, "a string that is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise fail(where, f"{value} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, where, depth + 1)
            _walk(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        if all(type(item) is int for item in value):  # a column of integers (the marks): nothing to walk
            return
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]", depth + 1)


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
        if is_int(count) and count > 0:
            total += count
    if total > MAX_COMPACT_MARKS:
        raise RunFormatError(
            f"{MALFORMED}its requests claim {total} marks, more than one file may hold ({MAX_COMPACT_MARKS})"
        )


def _check_ranks(ranks: Any) -> list[dict[str, Any]]:
    """The ranks of a distributed run: rank 0's entry without requests (they are the run's), each other's
    with its own, distinct rank numbers, clock offsets as integers. Returns the entries with their requests'
    marks plain."""
    if not isinstance(ranks, list) or not ranks:
        raise fail("ranks", f"a non-empty list is needed, not {type_name(ranks)}")
    seen = set()
    plain = []
    for i, entry in enumerate(ranks):
        where = f"ranks[{i}]"
        if not isinstance(entry, dict):
            raise fail(where, f"an object is needed, not {type_name(entry)}")
        for key in ("rank", "hostname", "offset_ns", "uncertainty_ns"):
            if key not in entry:
                raise fail(f"{where}.{key}", "missing")
        rank = check_int(entry["rank"], f"{where}.rank", 0, 2**20)
        if rank in seen:
            raise fail(f"{where}.rank", f"rank {rank} is listed twice")
        seen.add(rank)
        if not isinstance(entry["hostname"], str):
            raise fail(f"{where}.hostname", f"a string is needed, not {type_name(entry['hostname'])}")
        check_int(entry["offset_ns"], f"{where}.offset_ns", -MAX_NS, MAX_NS)
        check_int(entry["uncertainty_ns"], f"{where}.uncertainty_ns")
        if i == 0 and "requests" in entry:
            raise fail(f"{where}.requests", "the first rank's requests are the run's: not repeated")
        if i > 0:
            if not isinstance(entry.get("requests"), list):
                raise fail(f"{where}.requests", "a list is needed")
            requests = [_check_request(r, f"{where}.requests[{j}]") for j, r in enumerate(entry["requests"])]
            entry = {**entry, "requests": requests}
        plain.append(entry)
    return plain


def _check_roofline(roofline: dict[str, Any]) -> None:
    """The model's shape (non-negative integers, its cache dtype a string) and the peaks (positive, finite)."""
    for part, kind in (("model", ModelShape), ("peaks", Peaks)):
        value = roofline.get(part)
        if not isinstance(value, dict):
            raise fail(f"roofline.{part}", f"an object is needed, not {type_name(value)}")
        for spec in dataclasses.fields(kind):
            where = f"roofline.{part}.{spec.name}"
            if spec.name not in value:
                if spec.default is dataclasses.MISSING:
                    raise fail(where, "missing")
                continue
            item = value[spec.name]
            if "str" in str(spec.type):
                if not isinstance(item, str):
                    raise fail(where, f"a string is needed, not {type_name(item)}")
            elif "float" in str(spec.type):
                check_number(item, where, *PEAK_RANGE)
            elif not ("None" in str(spec.type) and item is None):
                check_int(item, where)
        unknown = set(value) - {f.name for f in dataclasses.fields(kind)}
        if unknown:
            raise fail(f"roofline.{part}", f"unknown fields {sorted(unknown)}")
    model = roofline["model"]
    for part, whole in SHAPE_PARTS:
        if model.get(part, 0) > model.get(whole, 0):
            raise fail(
                f"roofline.model.{part}", f"{model[part]} is more than its {whole} ({model.get(whole, 0)})"
            )


def _check_request(request: Any, where: str) -> dict[str, Any]:
    """One request of a document: its marks, token counts, then the types of its optional fields and what
    their values must be (:data:`REQUEST_VALUES`). Returns it with its marks plain (a new dict when they were
    compact)."""
    if not isinstance(request, dict):
        raise fail(where, f"an object is needed, not {type_name(request)}")
    request = _with_plain_marks(request, f"{where}.marks")
    _check_token_counts(request, where)
    for key, kinds in REQUEST_FIELDS.items():
        if key in request and not isinstance(request[key], kinds):
            raise fail(f"{where}.{key}", f"{type_name(request[key])} is not its type")
    for key, check in REQUEST_VALUES.items():
        if request.get(key) is not None:
            check(request[key], f"{where}.{key}", request)
    return request


def _with_plain_marks(request: dict[str, Any], where: str) -> dict[str, Any]:
    """``request`` with its marks checked, and decoded into a new request when they are compact."""
    marks = request.get("marks")
    if not isinstance(marks, dict):
        raise fail(where, "missing" if marks is None else f"an object is needed, not {type_name(marks)}")
    if "encoding" in marks:
        return {**request, "marks": _decoded_marks(marks, where)}
    _check_plain_marks(marks, where)
    return request


def _check_token_counts(request: dict[str, Any], where: str) -> None:
    """Every sequence's tokens positive and within the request's token marks (or its tokens_per_step), and
    its prompt's tokens an integer."""
    per_step = request.get("tokens_per_step")
    if per_step is None:
        most = request["marks"]["label"].count(Label.TOKEN)
    else:
        most = sum(check_ints(per_step, f"{where}.tokens_per_step", 1))
    counts = request.get("tokens_per_sequence")
    if counts is None:
        raise fail(f"{where}.tokens_per_sequence", "missing")
    if not check_ints(counts, f"{where}.tokens_per_sequence", 1):
        raise fail(f"{where}.tokens_per_sequence", "empty: a request has at least one sequence")
    if max(counts) > most:
        raise fail(f"{where}.tokens_per_sequence", f"{max(counts)} tokens, more than its {most} token marks")
    check_int(request.get("prompt_tokens"), f"{where}.prompt_tokens")


def _check_plain_marks(marks: dict[str, Any], where: str) -> None:
    """The plain mark columns (arrays of integers): known labels, host stamps in order."""
    columns = {}
    for name in MARK_COLUMNS:
        if name not in marks:
            raise fail(f"{where}.{name}", "missing")
        columns[name] = check_ints(marks[name], f"{where}.{name}", optional=name == "device_ns")
    if len({len(c) for c in columns.values()}) != 1:
        raise fail(where, "its columns have different lengths")
    known = {int(label) for label in Label}
    for j, label in enumerate(columns["label"]):
        if label not in known:
            raise fail(f"{where}.label[{j}]", f"{label} is no mark llmprof records")
    host = columns["host_ns"]
    for j in range(1, len(host)):
        if host[j] < host[j - 1]:
            raise fail(f"{where}.host_ns[{j}]", "not monotone (earlier than the mark before it)")


def _decoded_marks(marks: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """Compact marks -> the plain columns, checked as :func:`_check_plain_marks` checks plain ones (in one
    numpy pass a column)."""
    columns = decode_marks(marks, where)
    label, step, host, device = columns
    bad = np.flatnonzero(~np.isin(label, [int(known) for known in Label]))
    if bad.size:
        raise fail(f"{where}.label[{bad[0]}]", f"{label[bad[0]]} is no mark llmprof records")
    for name, column, low in (("step", step, 0), ("host_ns", host, 0), ("device_ns", device, -1)):
        bad = np.flatnonzero(column < low)
        if bad.size:
            raise fail(
                f"{where}.{name}[{bad[0]}]", f"{column[bad[0]]} is out of range ({max(low, 0)}..{MAX_NS})"
            )
    bad = np.flatnonzero(np.diff(host) < 0)
    if bad.size:
        raise fail(f"{where}.host_ns[{bad[0] + 1}]", "not monotone (earlier than the mark before it)")
    return plain_columns(columns)


def _check_backend(backend: str, where: str, request: dict[str, Any]) -> None:
    if backend not in ("host", "cuda"):
        raise fail(where, f"{backend!r:.20} is no timeline backend (host, cuda)")


def _check_cached_tokens(cached: int, where: str, request: dict[str, Any]) -> None:
    check_int(cached, where)
    if cached >= request["prompt_tokens"]:
        raise fail(where, "not fewer than the prompt's tokens: nothing was prefilled")


def _check_request_telemetry(telemetry: dict[str, Any], where: str, request: dict[str, Any]) -> None:
    """A request's telemetry: its counters (energy, peak bytes, CPU) numbers, its notes strings."""
    for key, value in telemetry.items():
        if key.endswith("_note"):
            if not isinstance(value, (str, type(None))):
                raise fail(f"{where}.{key}", f"a string is needed, not {type_name(value)}")
        elif value is not None:
            check_number(value, f"{where}.{key}", -MAX_NS, MAX_NS)


def _check_warnings(warnings: list[Any], where: str, request: dict[str, Any]) -> None:
    if not all(isinstance(w, str) for w in warnings):
        raise fail(where, "a list of strings is needed")


def _check_device_ends(ends: dict[str, Any], where: str, request: dict[str, Any]) -> None:
    """A device_map model's per-GPU forward ends: two GPUs or more, one time each per forward end."""
    if len(ends) < 2:
        raise fail(where, "fewer than two devices (a model on one device has none)")
    count = request["marks"]["label"].count(Label.FORWARD_END)
    for device, times in ends.items():
        if len(check_ints(times, f"{where}.{device}")) != count:
            raise fail(f"{where}.{device}", f"{len(times)} times for {count} forward ends")


# what the value of a request's optional field must be, once every field's type is checked (null is not
# checked): each checker gets the value, where it is, and the request (its marks plain)
REQUEST_VALUES: dict[str, Callable[[Any, str, dict[str, Any]], object]] = {
    "backend": _check_backend,
    "prefill_tokens": lambda value, where, request: check_int(value, where),
    "cached_tokens": _check_cached_tokens,
    "telemetry": _check_request_telemetry,
    "warnings": _check_warnings,
    "drafted_per_step": lambda value, where, request: check_ints(value, where),
    "device_forward_ends": _check_device_ends,
    "engine": lambda value, where, request: check_engine(value, where),
}


def _check_telemetry(telemetry: dict[str, Any]) -> None:
    """The sampler snapshot: columns of samples, each a list as long as the time column."""
    for block in ("samples", "buffered"):
        series = telemetry.get(block)
        if series is None:
            continue
        if not isinstance(series, dict) or not all(isinstance(c, list) for c in series.values()):
            raise fail(f"telemetry.{block}", "an object of lists is needed")
        times = series.get("t_ns", [])
        check_ints(times, f"telemetry.{block}.t_ns", optional=True)
        for name, column in series.items():
            if len(column) != len(times):
                raise fail(f"telemetry.{block}.{name}", "not as long as its t_ns column")
            if name not in ("t_ns", "device", "field"):
                for j, v in enumerate(column):
                    if v is not None:
                        check_number(v, f"telemetry.{block}.{name}[{j}]", -MAX_NS, MAX_NS)
    for key in ("devices",):
        if key in telemetry and not (
            isinstance(telemetry[key], list) and all(isinstance(d, dict) for d in telemetry[key])
        ):
            raise fail(f"telemetry.{key}", "a list of objects is needed")
    for key in ("kind", "reason", "power_source"):  # shown as text
        if not isinstance(telemetry.get(key, ""), (str, type(None))):
            raise fail(f"telemetry.{key}", f"a string is needed, not {type_name(telemetry[key])}")
    if telemetry.get("interval_s") is not None:
        check_number(telemetry["interval_s"], "telemetry.interval_s", 0, 86400)


def check_config(
    config: dict[str, Any],
    records: list[RawRequest],
    where: str = "config",
    names: dict[str, str] | None = None,
) -> None:
    """``config``'s batch size, prompt tokens, depth and max_new_tokens (those it holds, each an integer)
    against what every request shows: its batch, its prompt less its cached tokens, its cached tokens, its
    longest sequence (no more than the limit). A decode loop of the user's own (``loop``), continuous
    batching's and an engine's requests (each its own batch and prompt) are not the config's to describe.
    ``names``: how the message calls each key (a sweep's axes); raises RunFormatError naming both values."""
    for key, low in CONFIG_MINIMUM.items():
        if key in config:
            check_int(config[key], f"{where}.{(names or {}).get(key, key)}", low)
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
        if record.engine is not None or any(w.startswith("continuous batching") for w in record.warnings):
            continue  # an engine's request (vLLM), or continuous batching's (capture/batching.BATCHED)
        for key, (of, what) in shown.items():
            value = of(record)
            if key in config and (value > config[key] if key == "max_new_tokens" else value != config[key]):
                raise fail(
                    f"{where}.{(names or {}).get(key, key)}",
                    f"{config[key]}, but requests[{i}] has {what.format(value)}",
                )


def check_physical(m: RequestMetrics, where: str) -> None:
    """What a real request cannot be: a negative time, a first token after the end, a request scheduled
    before it arrived or after its first token."""
    if not 0 <= m.ttft <= m.latency:
        raise fail(where, f"TTFT {m.ttft:.6g} s is not within 0..latency ({m.latency:.6g} s)")
    if any(v < 0 for v in m.itl):
        raise fail(where, "a token earlier than the one before it")
    if m.queue is not None and not 0 <= m.queue <= m.ttft:
        raise fail(where, f"queue time {m.queue:.6g} s is not within 0..TTFT ({m.ttft:.6g} s)")
