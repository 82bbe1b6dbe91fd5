"""Telemetry samplers: NVML for GPUs, the process's CPU and memory otherwise (or when NVML is unavailable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmprof.capture.sampling.base import Sampler
from llmprof.capture.sampling.nvml import NvmlSampler
from llmprof.capture.sampling.process import ProcessSampler
from llmprof.errors import TelemetryUnavailable

__all__ = ["NvmlSampler", "ProcessSampler", "Sampler", "TelemetryUnavailable", "make_sampler"]


def make_sampler(
    gpus: Sequence[int | str] | None, interval_s: float | None = None, nvml: Any = None
) -> Sampler:
    """An NVML sampler for ``gpus`` when it can be had, else a process sampler whose ``reason`` says why not."""
    if not gpus:
        return ProcessSampler(interval_s, reason="no GPU telemetry: the model runs on the CPU")
    try:
        return NvmlSampler(gpus, interval_s, nvml)
    except TelemetryUnavailable as exc:
        return ProcessSampler(interval_s, reason=f"no GPU telemetry: {exc}")
