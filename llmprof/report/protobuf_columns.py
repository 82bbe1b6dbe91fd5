"""Protobuf messages encoded a column at a time: many messages of one shape (one row each) built from numpy
arrays of their field values, byte for byte as the protobuf library serializes them one at a time (fields in
the order given, which callers keep to field-number order as the library does; nothing packed), for a trace
of millions of packets. Each field's length is computed for every row first, then every field's bytes are
written straight to their place in the output: one pass over the output, whatever the nesting.

Wire format (protobuf.dev/programming-guides/encoding): a field is its tag ``number << 3 | wire type``, a
varint, then a varint value (type 0), 8 little-endian bytes (type 1, a double), or a varint length and that
many bytes (type 2, a nested message). numpy only.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED = 0, 1, 2


THRESHOLDS = np.array([1 << 7 * k for k in range(1, 10)], dtype=np.uint64)  # the least value of k + 1 bytes


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """How many bytes each value (uint64) takes as a varint."""
    return np.searchsorted(THRESHOLDS, values, side="right").astype(np.int64) + 1


def _as_varint(values: np.ndarray) -> np.ndarray:
    """Integers as a varint encodes them: uint64, a negative int64 as its two's complement (ten bytes)."""
    return np.asarray(values).astype(np.int64).view(np.uint64)


def _put_varints(out: np.ndarray, at: np.ndarray, values: np.ndarray, lengths: np.ndarray) -> None:
    """Write each value (uint64) as a varint at its offset: 7 bits a byte, low first, the high bit set on
    all but the last."""
    shortest, longest = int(lengths.min(initial=0)), int(lengths.max(initial=0))
    for k in range(longest):
        if k < shortest:  # every row has this byte: no mask
            rows, v, last = at, values, lengths == k + 1
        else:
            more = lengths > k
            rows, v, last = at[more], values[more], lengths[more] == k + 1
        byte = (v >> np.uint64(7 * k)) & np.uint64(0x7F)
        out[rows + k] = byte | (~last).astype(np.uint64) << np.uint64(7)


def _tag(number: int, wire_type: int) -> np.ndarray:
    key = np.array([number << 3 | wire_type], dtype=np.uint64)
    out = np.zeros(10, dtype=np.uint8)
    length = varint_lengths(key)
    _put_varints(out, np.zeros(1, dtype=np.int64), key, length)
    return out[: int(length[0])]


def _select(rows: np.ndarray | None, present: np.ndarray | None) -> np.ndarray | None:
    """The rows both masks keep (None: every row)."""
    if rows is None or present is None:
        return present if rows is None else rows
    return rows & present


def _pick(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


class Field:
    """One field of every row's message (absent where ``present`` is false; None: present in every row)."""

    def __init__(self, number: int, wire_type: int, present: np.ndarray | None):
        self.tag = _tag(number, wire_type)
        self.present = present

    @cached_property
    def lengths(self) -> np.ndarray:
        """Bytes per row: the tag and the value, 0 where absent."""
        lengths = len(self.tag) + self._value_lengths()
        return lengths if self.present is None else np.where(self.present, lengths, 0)

    def _value_lengths(self) -> np.ndarray:
        raise NotImplementedError

    def write(self, out: np.ndarray, at: np.ndarray, rows: np.ndarray | None) -> None:
        """Write the field of each of ``rows`` (a mask, the enclosing messages present; None: every row) at
        its offset (``at``, one per row)."""
        rows = _select(rows, self.present)
        start = _pick(at, rows)
        for j, byte in enumerate(self.tag):
            out[start + j] = byte
        self._write_value(out, start + len(self.tag), rows)

    def _write_value(self, out: np.ndarray, at: np.ndarray, rows: np.ndarray | None) -> None:
        """Write the value of each of ``rows`` at its offset (``at``, one per row written)."""
        raise NotImplementedError


class Varint(Field):
    """An integer (int64, uint64, enum or bool) field."""

    def __init__(self, number: int, values: np.ndarray, present: np.ndarray | None = None):
        super().__init__(number, VARINT, present)
        self.values = _as_varint(values)
        self.value_lengths = varint_lengths(self.values)

    def _value_lengths(self) -> np.ndarray:
        return self.value_lengths

    def _write_value(self, out: np.ndarray, at: np.ndarray, rows: np.ndarray | None) -> None:
        _put_varints(out, at, _pick(self.values, rows), _pick(self.value_lengths, rows))


class Double(Field):
    """A double field (8 bytes, little-endian)."""

    def __init__(self, number: int, values: np.ndarray, present: np.ndarray | None = None):
        super().__init__(number, FIXED64, present)
        self.values = np.asarray(values, dtype="<f8")

    def _value_lengths(self) -> np.ndarray:
        return np.full(len(self.values), 8, dtype=np.int64)

    def _write_value(self, out: np.ndarray, at: np.ndarray, rows: np.ndarray | None) -> None:
        out[at[:, None] + np.arange(8)] = _pick(self.values, rows).view(np.uint8).reshape(-1, 8)


class Message(Field):
    """A nested message field: ``fields`` (of the same rows) are its body."""

    def __init__(self, number: int, fields: list[Field], present: np.ndarray | None = None):
        super().__init__(number, LENGTH_DELIMITED, present)
        self.fields = fields
        self.body = _total(fields)
        self.body_lengths = varint_lengths(self.body.astype(np.uint64))

    def _value_lengths(self) -> np.ndarray:
        return self.body_lengths + self.body

    def _write_value(self, out: np.ndarray, at: np.ndarray, rows: np.ndarray | None) -> None:
        body_lengths = _pick(self.body_lengths, rows)
        _put_varints(out, at, _pick(self.body, rows).astype(np.uint64), body_lengths)
        if rows is None:
            offsets = at + body_lengths
        else:
            offsets = np.zeros(len(rows), dtype=np.int64)
            offsets[rows] = at + body_lengths
        for f in self.fields:
            f.write(out, offsets, rows)
            offsets += f.lengths


class Encoded(Field):
    """Fields already encoded (tags included), for the rows ``where`` says: ``data[k]`` is row
    ``where[k]``'s; the other rows have none."""

    def __init__(self, n: int, where: np.ndarray, data: list[bytes]):
        present = np.zeros(n, dtype=bool)
        present[where] = True
        self.tag = np.zeros(0, dtype=np.uint8)
        self.present = present
        self.chunks = np.zeros(n, dtype=object)
        self.chunks[where] = [np.frombuffer(d, dtype=np.uint8) for d in data]
        self.sizes = np.zeros(n, dtype=np.int64)
        self.sizes[where] = [len(d) for d in data]

    def _value_lengths(self) -> np.ndarray:
        return self.sizes

    def _write_value(self, out: np.ndarray, at: np.ndarray, rows: np.ndarray | None) -> None:
        for start, chunk in zip(at.tolist(), _pick(self.chunks, rows).tolist()):
            out[start : start + len(chunk)] = chunk


def _total(fields: list[Field]) -> np.ndarray:
    """Bytes per row of ``fields`` together."""
    total = fields[0].lengths.copy()
    for f in fields[1:]:
        total += f.lengths
    return total


def encode(fields: list[Field]) -> bytes:
    """Every row's ``fields``, end to end, row after row."""
    lengths = _total(fields)
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    at = np.cumsum(lengths) - lengths
    for f in fields:
        f.write(out, at, None)
        at = at + f.lengths
    return out.tobytes()
