"""Reporters: renderers only, one module per output format, each a function ``render(run, out)`` that writes
a :class:`~llmprof.runfile.Run` to a stream (a binary one for the PNG plot). They never import torch or NVML,
so a saved run can be rendered on any machine."""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import io
from collections.abc import Iterator
from typing import IO, Any, Protocol

from llmprof.runfile import Run

# format -> "module:function" of its renderer; per-step CSV is the CSV format's second renderer
RENDERERS = {
    "table": "table:render",
    "md": "markdown:render",
    "csv": "csv_format:render",
    "json": "json_format:render",
    "trace": "trace:render",
    "perfetto": "perfetto_trace:render",
    "plot": "plot:render",
}
PER_STEP_CSV = "csv_format:render_steps"
KERNELS_CSV = "kernels:render_csv"
FORMATS = tuple(RENDERERS)
BINARY_FORMATS = {"plot": "a PNG", "perfetto": "a binary Perfetto trace"}  # format -> what it writes


class Renderer(Protocol):
    """Writes ``run`` to ``out``: text, or bytes for a binary format."""

    def __call__(self, run: Run, out: IO[Any]) -> None: ...


def renderer(fmt: str, per_step: bool = False, kernels: bool = False) -> Renderer:
    """The renderer of format ``fmt`` (one of FORMATS); ``per_step``: CSV rows per decode step; ``kernels``:
    CSV rows per captured step and operator/kernel."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    csv_kind = KERNELS_CSV if kernels else PER_STEP_CSV if per_step else RENDERERS[fmt]
    module, function = (csv_kind if fmt == "csv" else RENDERERS[fmt]).split(":")
    render_to = getattr(importlib.import_module(f"llmprof.report.{module}"), function)

    @functools.wraps(render_to)
    def without_collector(run: Run, out: IO[Any]) -> None:
        with gc_paused():
            render_to(run, out)

    return without_collector


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused: a render builds up to millions of acyclic objects (trace
    events, CSV rows), which the collector would scan again and again as they accumulate (half the time of
    the trace of a million marks); reference counting frees them all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def render(run: Run, fmt: str, per_step: bool = False, kernels: bool = False) -> str | bytes:
    """``run`` in format ``fmt``: text, or bytes for a binary format (``plot``'s PNG, ``perfetto``).
    ``per_step``: CSV rows per decode step instead of per request; ``kernels``: CSV rows per captured step and
    operator/kernel."""
    out: IO[Any] = io.BytesIO() if fmt in BINARY_FORMATS else io.StringIO()
    renderer(fmt, per_step, kernels)(run, out)
    return out.getvalue()
