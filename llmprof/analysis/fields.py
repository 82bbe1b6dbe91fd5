"""The field checks that every validation of a run file shares (the run's fields, its kernel capture's): each
raises RunFormatError naming the field and what is wrong with it, in one wording (docs/architecture.md,
"Errors"). Pure Python."""

from __future__ import annotations

from typing import Any

from llmprof.errors import RunFormatError

MALFORMED = "malformed llmprof run: "  # what every field's error begins with
MAX_NS = 2**63 - 1


def fail(where: str, what: str) -> RunFormatError:
    """The error of field ``where``: ``what`` is wrong with it."""
    return RunFormatError(f"{MALFORMED}{where}: {what}")


def type_name(value: Any) -> str:
    """The JSON-ish name of ``value``'s type (``null`` for None) for an error message."""
    return "null" if value is None else type(value).__name__


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: Any, where: str, low: int = 0, high: int = MAX_NS) -> int:
    """``value`` if it is an integer (not a bool, not a float) within low..high."""
    if not is_int(value):
        raise fail(where, f"an integer is needed, not {type_name(value)} {value!r:.40}")
    if not low <= value <= high:
        raise fail(where, f"{value} is out of range ({low}..{high})")
    return value


def check_number(value: Any, where: str, low: float, high: float) -> float:
    """``value`` if it is a number (an integer or a float, not a bool) within low..high (NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(where, f"a number is needed, not {type_name(value)} {value!r:.40}")
    if not low <= value <= high:
        raise fail(where, f"{value!r:.20} is out of range ({low:g}..{high:g})")
    return value


def check_ints(
    values: Any, where: str, low: int = 0, high: int = MAX_NS, optional: bool = False
) -> list[Any]:
    """``values`` if it is a list of integers within low..high (``optional``: nulls too)."""
    if not isinstance(values, list):
        raise fail(where, f"a list is needed, not {type_name(values)}")
    for i, value in enumerate(values):
        if not (optional and value is None):
            check_int(value, f"{where}[{i}]", low, high)
    return values
