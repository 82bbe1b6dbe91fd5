"""Repeat one generate() call W + R times under a profiler, yielding each recorded request as it completes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llmprof.profiler import Profiler
from llmprof.record import RawRequest


def repeat_generate(
    profiler: Profiler, inputs: dict[str, Any], repeats: int, warmup: int = 0, **generate_kwargs: Any
) -> Iterator[RawRequest]:
    """Run ``generate(**inputs, **generate_kwargs)`` ``warmup + repeats`` times on the attached profiler's model.

    Yields each request's record (warm-ups flagged) right after its call, so a caller that is interrupted keeps
    what was measured.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if not profiler.attached:
        raise RuntimeError("attach the profiler first")
    for i in range(warmup + repeats):
        profiler.warmup = i < warmup
        before = len(profiler.records)
        profiler.model.generate(**inputs, **generate_kwargs)
        if len(profiler.records) == before:
            raise RuntimeError("generate() produced no token: nothing to measure")
        yield profiler.records[-1]
