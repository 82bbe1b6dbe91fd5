"""Repeat one generate() call W + R times under the profiler, yielding each recorded request as it completes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llmprof.profiler import profile
from llmprof.record import RawRequest


def repeat_generate(
    model: Any, inputs: dict[str, Any], repeats: int, warmup: int = 0, **generate_kwargs: Any
) -> Iterator[RawRequest]:
    """Run ``model.generate(**inputs, **generate_kwargs)`` ``warmup + repeats`` times, profiled.

    Yields each request's record (warm-ups flagged) right after its call, so a caller that is interrupted keeps
    what was measured. The profiler is detached when the iteration ends or is abandoned.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    with profile(model) as prof:
        for i in range(warmup + repeats):
            prof.warmup = i < warmup
            before = len(prof.records)
            model.generate(**inputs, **generate_kwargs)
            if len(prof.records) == before:
                raise RuntimeError("generate() produced no token: nothing to measure")
            yield prof.records[-1]
