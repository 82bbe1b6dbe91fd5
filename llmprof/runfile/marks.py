"""The compact marks codec of the run file (:data:`MARKS_ENCODING`): a request's plain mark columns to their
compact form and back (docs/architecture.md, "Where each thing lives"). Decoding checks the encoding, never
the marks themselves (that is :mod:`llmprof.runfile.validation`'s)."""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import numpy as np

from llmprof.analysis.fields import check_int, fail, type_name

# a request's marks in a run file: the columns label, step, host_ns and device_ns (-1 where a mark has no
# device time), each as its first value then the differences of consecutive values, little-endian int64,
# one column after the other, zlib-compressed, then base64 (the differences are small: 3-4x smaller files)
MARKS_ENCODING = "delta-int64-zlib-base64"
MARK_COLUMNS = ("label", "step", "host_ns", "device_ns")
# compact marks decoded from one document at most (zlib inflates up to ~1000x: a small file may not claim more
# than this); 5.8x the issue-17 case of 60 requests of 16k steps at batch 64 (2.9M marks)
MAX_COMPACT_MARKS = 2**24


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


def decode_marks(marks: dict[str, Any], where: str) -> np.ndarray:
    """Compact marks -> their columns (one int64 row each, in :data:`MARK_COLUMNS` order; device_ns -1 where
    none); raises RunFormatError naming ``where`` if the encoding, count or data is not what it says. The zlib
    stream is never inflated past its count."""
    if marks["encoding"] != MARKS_ENCODING:
        raise fail(
            f"{where}.encoding",
            f"{marks['encoding']!r:.40} is no encoding this llmprof reads ({MARKS_ENCODING})",
        )
    count = check_int(marks.get("count"), f"{where}.count", 0, 2**40)
    data = marks.get("data")
    if not isinstance(data, str):
        raise fail(f"{where}.data", f"a string is needed, not {type_name(data)}")
    size = len(MARK_COLUMNS) * 8 * count
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(base64.b64decode(data, validate=True), size + 1)  # never more than needed
    except (binascii.Error, zlib.error, ValueError) as exc:  # ValueError: a character that is not ASCII
        raise fail(f"{where}.data", f"not base64 of zlib data ({exc})") from None
    if len(raw) != size or not inflate.eof:
        raise fail(f"{where}.data", f"does not hold {count} marks (truncated?)")
    return np.cumsum(np.frombuffer(raw, "<i8").reshape(len(MARK_COLUMNS), count), axis=1)


def plain_columns(columns: np.ndarray) -> dict[str, list[Any]]:
    """Decoded columns (:func:`decode_marks`) -> the plain ones of a request's ``marks`` (None where a mark has
    no device time)."""
    label, step, host, device = columns
    devices = [None] * len(device) if (device < 0).all() else [None if d < 0 else d for d in device.tolist()]
    return {"label": label.tolist(), "step": step.tolist(), "host_ns": host.tolist(), "device_ns": devices}
