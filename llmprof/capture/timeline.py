"""The clock policy around the compiled recorder (``llmprof._core``): which timeline a device gets, on which
stream its events are recorded, and how much room a call needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from llmprof._core import Timeline, cuda_driver_status
from llmprof.errors import CaptureError

MARKS_PER_STEP = 4  # forward begin/end, token, and room for a vision span or a prefill chunk
DEFAULT_CAPACITY = 1 << 14


def make_timeline(devices: torch.device | Sequence[torch.device]) -> Timeline:
    """Host stamps on the CPU; on a GPU, CUDA events on torch's current stream of ``device``; on several GPUs
    (a device_map model), one lane per GPU, the first where a forward starts. Raises CaptureError when the model
    is on a GPU whose driver cannot be used."""
    gpus = [d for d in _as_list(devices) if d.type == "cuda"]
    if not gpus:
        return Timeline(DEFAULT_CAPACITY)
    ok, reason = cuda_driver_status()
    if not ok:
        raise CaptureError(f"the model is on {gpus[0]} but the CUDA driver cannot be used: {reason}")
    timeline = Timeline(DEFAULT_CAPACITY, devices=[_index(d) for d in gpus])
    follow_stream(timeline, gpus)
    return timeline


def follow_stream(timeline: Timeline, devices: torch.device | Sequence[torch.device] | None) -> None:
    """Record the next events on torch's current stream of each device of the timeline's lanes (a no-op off
    the GPU)."""
    gpus = [d for d in _as_list(devices) if d.type == "cuda"]
    if not gpus:
        return
    if len(gpus) == 1:
        timeline.set_stream(torch.cuda.current_stream(gpus[0]).cuda_stream)
    else:
        timeline.set_streams([torch.cuda.current_stream(d).cuda_stream for d in gpus])


def model_devices(model: torch.nn.Module) -> list[torch.device]:
    """The devices of ``model``'s parameters and buffers, the one its forward starts on (its input embeddings')
    first, then the others in order of first use (a device_map model spans several GPUs)."""
    found: dict[torch.device, None] = {}
    first = _input_device(model)
    if first is not None:
        found[first] = None
    for tensor in (*model.parameters(), *model.buffers()):
        device = tensor.device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        found.setdefault(device)
    return list(found) or [torch.device("cpu")]


def timed_devices(model: torch.nn.Module) -> list[torch.device]:
    """What a timeline of ``model`` records on: every GPU it is on (one lane each, the forward's first GPU
    first), even when its input embeddings are offloaded to the CPU; else its one device (host stamps)."""
    devices = model_devices(model)
    return [d for d in devices if d.type == "cuda"] or devices[:1]


def _input_device(model: torch.nn.Module) -> torch.device | None:
    embeddings = getattr(model, "get_input_embeddings", None)
    try:
        weight = embeddings().weight if callable(embeddings) else None
    except (AttributeError, NotImplementedError):
        return None
    device = getattr(weight, "device", None)
    return device if isinstance(device, torch.device) else None


def _as_list(devices: torch.device | Sequence[torch.device] | None) -> list[torch.device]:
    if devices is None:
        return []
    return (
        [torch.device(devices)]
        if isinstance(devices, (torch.device, str))
        else [torch.device(d) for d in devices]
    )


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def reserve(timeline: Timeline, steps: int) -> None:
    """Grow ``timeline`` (outside the hot path) to hold a call of up to ``steps`` steps."""
    needed = MARKS_PER_STEP * (steps + 4)
    if needed > timeline.capacity:
        timeline.reserve(needed)


def resolved(timeline: Timeline) -> dict[str, Any]:
    """:meth:`Timeline.resolve` with its columns as lists: ``device_ns`` None for host-only marks, ``lane_ns``
    (several lanes only, else None) a row of every lane's time per mark."""
    out: dict[str, Any] = dict(timeline.resolve())
    has_device = out.pop("has_device")
    out["device_ns"] = (
        np.where(has_device, out["device_ns"], None).tolist()
        if has_device.any()
        else [None] * len(has_device)
    )
    for name in ("label", "step", "host_ns", "lanes"):
        out[name] = out[name].tolist()
    if out["lane_ns"] is not None:
        out["lane_ns"] = out["lane_ns"].tolist()
    return out
