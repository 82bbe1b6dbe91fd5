"""The clock policy around the compiled recorder (``llmprof._core``): which timeline a device gets, on which
stream its events are recorded, and how much room a call needs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llmprof._core import Timeline, cuda_driver_status
from llmprof.errors import CaptureError

MARKS_PER_STEP = 4  # forward begin/end, token, and room for a vision span or a prefill chunk
DEFAULT_CAPACITY = 1 << 14


def make_timeline(device: torch.device) -> Timeline:
    """Host stamps on the CPU; on a GPU, CUDA events on torch's current stream of ``device``. Raises
    CaptureError when the model is on a GPU whose driver cannot be used."""
    if device.type != "cuda":
        return Timeline(DEFAULT_CAPACITY)
    ok, reason = cuda_driver_status()
    if not ok:
        raise CaptureError(f"the model is on {device} but the CUDA driver cannot be used: {reason}")
    timeline = Timeline(DEFAULT_CAPACITY, device.index or 0)
    follow_stream(timeline, device)
    return timeline


def follow_stream(timeline: Timeline, device: torch.device | None) -> None:
    """Record the next events on torch's current stream of ``device`` (a no-op off the GPU)."""
    if device is not None and device.type == "cuda":
        timeline.set_stream(torch.cuda.current_stream(device).cuda_stream)


def reserve(timeline: Timeline, steps: int) -> None:
    """Grow ``timeline`` (outside the hot path) to hold a call of up to ``steps`` steps."""
    needed = MARKS_PER_STEP * (steps + 4)
    if needed > timeline.capacity:
        timeline.reserve(needed)


def resolved(timeline: Timeline) -> dict[str, Any]:
    """:meth:`Timeline.resolve` with its columns as lists: ``device_ns`` None for host-only marks."""
    out: dict[str, Any] = dict(timeline.resolve())
    has_device = out.pop("has_device")
    out["device_ns"] = (
        np.where(has_device, out["device_ns"], None).tolist()
        if has_device.any()
        else [None] * len(has_device)
    )
    for name in ("label", "step", "host_ns"):
        out[name] = out[name].tolist()
    return out
