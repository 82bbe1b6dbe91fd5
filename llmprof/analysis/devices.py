"""A model over several GPUs in one process (a device_map pipeline): per forward, when each GPU's part of it was
done (its lane's event at the forward's end, see docs/architecture.md, "Several GPUs"), and from those the stage
each GPU adds to the forward: from the moment the GPUs before it were done (the forward's start for the first)
to the moment it was done too. The stages of a forward add up to its device time. Pure Python, no torch."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from llmprof.analysis.record import Label, RawRequest


@dataclass
class DeviceStage:
    """One GPU's stage, median over the measured requests' forwards (ms): in the prefill forward, in a decode
    forward, and its share of the decode forward (the stages' medians added up)."""

    device: str
    prefill_ms: float | None
    decode_ms: float | None
    decode_share: float | None


def forward_stages(raw: RawRequest) -> list[tuple[int, int, list[int]]]:
    """``(step, begin, stage ns per device)`` of each marked forward of ``raw`` (its begin on the run's clock),
    devices in the lanes' order (empty without per-device ends)."""
    ends = raw.device_forward_ends
    if ends is None:
        return []
    ordinal = {
        pos: k for k, pos in enumerate(i for i, label in enumerate(raw.label) if label == Label.FORWARD_END)
    }
    times = raw.times
    out = []
    for step, begin, end in raw.marks.pairs(Label.FORWARD_BEGIN, Label.FORWARD_END):
        done, stages = times[begin], []
        for device_ends in ends.values():
            reached = max(done, device_ends[ordinal[end]])
            stages.append(reached - done)
            done = reached
        out.append((step, times[begin], stages))
    return out


def device_stages(records: list[RawRequest]) -> list[DeviceStage]:
    """Each GPU's stage over the measured records (none unless they hold per-device ends)."""
    measured = [r for r in records if not r.warmup and r.device_forward_ends is not None]
    if not measured:
        return []
    devices = list(measured[0].device_forward_ends)
    prefill: list[list[int]] = [[] for _ in devices]
    decode: list[list[int]] = [[] for _ in devices]
    for raw in measured:
        if list(raw.device_forward_ends) != devices:
            continue  # another placement: not the same stages
        for step, _, stages in forward_stages(raw):
            for column, ns in zip(prefill if step == 0 else decode, stages):
                column.append(ns)
    decode_ms = [statistics.median(c) / 1e6 if c else None for c in decode]
    total = sum(d for d in decode_ms if d is not None)
    return [
        DeviceStage(
            device,
            statistics.median(p) / 1e6 if p else None,
            d,
            d / total if d is not None and total > 0 else None,
        )
        for device, p, d in zip(devices, prefill, decode_ms)
    ]
