"""The one error hierarchy: every failure a user can act on derives from :class:`LlmprofError`.

The CLI maps each to a one-line message and its ``exit_code`` in one place (``llmprof.cli.main``);
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations


class LlmprofError(Exception):
    """A failure the user can act on; its message is meant for them as is."""

    exit_code = 1


class UsageError(LlmprofError):
    """Bad options or bad input: nothing was measured (exit status 2)."""

    exit_code = 2


class RunFormatError(UsageError):
    """A file is not a readable llmprof run."""


class ModelLoadError(UsageError):
    """A model or its tokenizer could not be loaded."""


class VariantError(UsageError):
    """A variant (attention implementation, compile, dtype, patch) cannot be built or applied."""


class PlotUnavailable(UsageError):
    """matplotlib is missing; the message says how to get it."""


class CaptureError(LlmprofError, RuntimeError):
    """The profiler cannot record here: misuse (attached twice), or a device it cannot time."""


class TelemetryUnavailable(LlmprofError):
    """NVML cannot be used here; the message says why (the profiler then samples the process instead)."""


def first_line(exc: BaseException, default: str = "") -> str:
    """The first line of an exception's message (``default`` when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else default


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {first_line(exc)}"
