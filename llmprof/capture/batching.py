"""Continuous batching (``generate_batch``): each request of a batch as a record of its own, from the token
times transformers stamps itself (``record_timestamps``, transformers 5.x) on the host clock."""

from __future__ import annotations

import time
from typing import Any

from llmprof.analysis.record import Label, RawRequest

# transformers stamps them with time.perf_counter: llmprof's clock on Linux
PERF_COUNTER_IS_MONOTONIC = "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation
BATCHED = (
    "continuous batching: the request's token times are transformers' own host stamps, amid the other"
    " requests of its batch; no breakdown"
)


def batch_request(output: Any, warmup: bool) -> RawRequest | None:
    """One finished request of continuous batching (a transformers ``GenerationOutput`` with token times) as
    a record: ``t0`` when it was queued, ``T_k`` when its k-th token was stamped, ``t_end`` when it finished.
    None for a request that failed or has no times."""
    times, generated = getattr(output, "timestamps", None), getattr(output, "generated_tokens", None)
    created, lifespan = getattr(output, "created_time", None), getattr(output, "lifespan", None)
    if getattr(output, "error", None) or not times or not generated or len(times) != len(generated):
        return None
    if created is None or not lifespan or lifespan[1] < times[-1]:
        return None
    stamps = [created, *times, lifespan[1]]
    labels = [Label.REQUEST_START] + [Label.TOKEN] * len(times) + [Label.REQUEST_END]
    return RawRequest(
        label=[int(label) for label in labels],
        step=[0, *range(1, len(times) + 1), len(times)],
        host_ns=[round(t * 1e9) for t in stamps],
        device_ns=[None] * len(stamps),
        tokens_per_sequence=[len(generated)],
        prompt_tokens=len(getattr(output, "prompt_ids", None) or []),
        warmup=warmup,
        warnings=[BATCHED],
    )
