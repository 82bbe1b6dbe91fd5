"""The roofline's inputs for a loaded model (docs/architecture.md, "Metrics"): its shape and the device's peaks,
given on the command line, known for the card, or measured now."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.roofline import Roofline, si
from llmprof.capture.model_shape import model_shape
from llmprof.capture.peak import resolve_peaks


@dataclass(frozen=True)
class PeakOptions:
    """The device's peaks as the user gives them: bytes/s and FLOP/s (None: the card's known peaks, else
    measured), and whether to measure them even for a known card."""

    bandwidth: float | None = None
    flops: float | None = None
    measure: bool = False


def roofline_inputs(model: Any, device: Any, peaks: PeakOptions) -> dict[str, Any] | None:
    """The model's shape and the device's peaks, for the run's ``roofline``; None, said on stderr, when the
    model cannot be sized or the peaks cannot be measured."""
    try:
        shape = model_shape(model)
        found, measurement = resolve_peaks(device, model.dtype, peaks.bandwidth, peaks.flops, peaks.measure)
    except (ValueError, RuntimeError) as exc:  # an unknown architecture; out of memory while measuring
        print(f"llmprof: no roofline: {exc}", file=sys.stderr)
        return None
    if measurement is not None and measurement.fresh:
        print(
            f"peaks measured on {found.device} in {measurement.seconds:.2f} s: "
            f"{si(measurement.bandwidth, 'B/s')} copy, {si(measurement.flops, 'FLOP/s')} {found.dtype} matmul",
            file=sys.stderr,
        )
    return Roofline(shape, found).to_dict()
