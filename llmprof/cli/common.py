"""What the subcommands share: argument checkers (user errors are :class:`llmprof.errors.UsageError`) and
their summaries in ``-h``."""

from __future__ import annotations

import argparse
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from llmprof.errors import UsageError
from llmprof.runfile import PEAK_RANGE

SI_PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


def summary(doc: str) -> str:
    """A subcommand's line in ``llmprof -h``: the first sentence of its module docstring, its lines joined."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph, maxsplit=1)[0]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def rate(units: str, example: str) -> Callable[[str], float]:
    """argparse type: a rate > 0, a plain number (3.35e12) or with an SI prefix and optionally one of ``units``
    (a regex alternation; prefix and unit in any case): ``rate("B/s", "3350GB/s")`` reads 3350GB/s and 3.35 TB/s."""
    number = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
    pattern = re.compile(rf"\s*({number})\s*([kmgtp]?)(?:{units})?\s*", re.IGNORECASE)

    def parse(text: str) -> float:
        match = pattern.fullmatch(text)
        value = float(match[1]) * SI_PREFIXES[match[2].upper()] if match else math.nan
        low, high = PEAK_RANGE  # what a run file keeps
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a rate from {low:g} to {high:g} like {example}, got {text!r}"
            )
        return value

    return parse


def seed(text: str) -> int:
    """argparse type: a seed for torch, 0 <= seed < 2**63."""
    value = _int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def check_output_path(path: str | None, option: str) -> None:
    """Fail before any work if ``path`` cannot be written: its directory must exist and take a new file, and
    the file itself, if there is one, be writable."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise UsageError(f"{option} {path}: not writable")
        if not target.is_file():
            return  # a pipe or a device: written as it is
    parent = target.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {str(target.parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: directory {str(target.parent)!r} is not writable")


def check_distinct(inputs: list[str], outputs: dict[str, str | None]) -> None:
    """Fail before any work when an output (option -> path) would replace an input or another output."""
    seen = {os.path.realpath(path): f"the input {path}" for path in inputs}
    for option, path in outputs.items():
        if path is None or _is_stream(path):
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise UsageError(
                f"{option} {path} is also {seen[key]}: it would be overwritten; choose another path"
            )
        seen[key] = option


def _is_stream(path: str) -> bool:
    """A pipe, a terminal or a device: written to, never replaced."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False
