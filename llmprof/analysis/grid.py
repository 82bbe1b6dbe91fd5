"""The points of a sweep: axes given as lists and ranges, llama-bench style (``1,4,16``, ``1-64*2``,
``128-512+128``), and their Cartesian product in a stable order."""

from __future__ import annotations

import itertools
import re
from typing import Any

from llmprof.errors import UsageError

RANGE = re.compile(r"^(\d+)-(\d+)(?:([*+])(\d+))?$")
MAX_VALUES = 1000  # per axis: a typo like 1-100000 must not plan a sweep of a lifetime


def parse_values(text: str, option: str, minimum: int = 1) -> list[int]:
    """The integers of ``text``: comma-separated numbers and ranges ``A-B`` (step 1), ``A-B+S`` (step S) and
    ``A-B*F`` (times F), in order, each once. Raises UsageError naming ``option``."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = RANGE.match(part)
        if part.isdigit():
            values.append(int(part))
        elif match:
            first, last, op, by = match.groups()
            values += _range(int(first), int(last), op or "+", int(by or 1), option, part)
        else:
            raise UsageError(
                f"{option}: {part!r} is not a number or a range (e.g. 1,4,16 or 1-64*2 or 128-512+128)"
            )
        if len(values) > MAX_VALUES:
            raise UsageError(f"{option}: more than {MAX_VALUES} values")
    low = min(values)
    if low < minimum:
        raise UsageError(f"{option}: {low} is below {minimum}")
    return list(dict.fromkeys(values))


def _range(first: int, last: int, op: str, by: int, option: str, part: str) -> list[int]:
    if first > last:
        raise UsageError(f"{option}: {part!r} runs backwards ({first} > {last})")
    if (op == "+" and by < 1) or (op == "*" and (by < 2 or first < 1)):
        raise UsageError(f"{option}: {part!r} never advances")
    out, value = [], first
    while value <= last and len(out) <= MAX_VALUES:
        out.append(value)
        value = value + by if op == "+" else value * by
    return out


def points(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest."""
    names = list(axes)
    return [dict(zip(names, combination)) for combination in itertools.product(*axes.values())]


def point_key(point: dict[str, Any]) -> str:
    """A point as text, e.g. ``batch_size=4 prompt_len=128``: the same point always gives the same key."""
    return " ".join(f"{name}={point[name]}" for name in sorted(point))
