"""One recorded call (generate() under the profiler, or a user's decode loop with a Recorder), warm-ups until
steady, and a sweep's context depth in a KV cache; the loop of warm-ups and repeats is ``llmprof.cli.measure``'s."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from llmprof.analysis.record import RawRequest
from llmprof.capture.profiler import Profiler
from llmprof.capture.recorder import COMPILED
from llmprof.errors import CaptureError

STEADY_WINDOW = 3  # warm-up calls whose latencies must agree
STEADY_TOLERANCE = 0.03  # ... within 3% of their median
STEADY_MAX_CALLS = 30


def profiled_call(
    profiler: Profiler, inputs: dict[str, Any], warmup: bool = False, **generate_kwargs: Any
) -> RawRequest:
    """One ``generate()`` on the attached profiler's model; its record (flagged warm-up or not)."""
    if not profiler.attached:
        raise CaptureError("attach the profiler first")
    profiler.warmup = warmup
    before = len(profiler.records)
    profiler.model.generate(**inputs, **generate_kwargs)
    if len(profiler.records) == before:
        raise CaptureError("generate() produced no token: nothing to measure")
    return profiler.records[-1]


class TimedCall(Protocol):
    """A call as warm-up judges it: a record, or the records of one engine call (``cli.measure.Call``)."""

    @property
    def window(self) -> tuple[int, int]: ...

    @property
    def warnings(self) -> list[str]: ...


Timed = TypeVar("Timed", bound=TimedCall)


def is_steady(
    records: Sequence[TimedCall], window: int = STEADY_WINDOW, tolerance: float = STEADY_TOLERANCE
) -> bool:
    """Whether the last ``window`` calls took the same time within ``tolerance`` of their median, none of them
    compiling a new graph (torch.compile)."""
    if len(records) < window or any(COMPILED in r.warnings for r in records[-window:]):
        return False
    latencies = [end - start for start, end in (r.window for r in records[-window:])]
    middle = statistics.median(latencies)
    return all(abs(v - middle) <= tolerance * middle for v in latencies)


def warm_up(
    call: Callable[[], Timed], count: int | None, max_calls: int = STEADY_MAX_CALLS
) -> Iterator[Timed]:
    """``count`` warm-up calls, or (``count`` None) calls until :func:`is_steady`, at most ``max_calls``."""
    records: list[Timed] = []
    while (
        (len(records) < count) if count is not None else not (is_steady(records) or len(records) >= max_calls)
    ):
        records.append(call())
        yield records[-1]


def recorded_call(
    loop: Callable[..., Any], recorder: Any, model: Any, inputs: dict[str, Any], warmup: bool = False
) -> RawRequest:
    """One call of a user's decode loop ``loop(model, inputs, recorder)``: the request it recorded (flagged
    warm-up or not). Raises CaptureError when it recorded none, or more than one, or when the loop exits
    (``SystemExit``, as any other exception, ends the measuring and keeps what was measured)."""
    before = len(recorder.records)
    try:
        loop(model, inputs, recorder)
    except SystemExit as exc:
        raise CaptureError(f"the loop raised SystemExit({exc.code!r})") from None
    new = len(recorder.records) - before
    if new != 1:
        raise CaptureError(
            f"the loop recorded {new} requests in one call: open exactly one with recorder.request() per call"
        )
    record = recorder.records[-1]
    record.warmup = warmup
    return record


def depth_cache(model: Any, inputs: dict[str, Any], depth: int, seed: int = 0) -> tuple[dict[str, Any], Any]:
    """The prompts of ``inputs`` behind ``depth`` tokens already in a KV cache (a sweep's context depth): the
    generate() arguments (depth + prompt ids, their mask, the cache) and the cache those ``depth`` tokens
    leave, run through the model once (drawn from the prompt's own tokens). Cropping the cache back to
    ``depth`` tokens after each call restores it. Raises CaptureError for a model that returns no KV cache."""
    import torch

    from llmprof.capture.tokens import cache_argument

    name = cache_argument()
    prompt = inputs["input_ids"]
    generator = torch.Generator().manual_seed(seed)
    ids = prompt[:, torch.randint(prompt.shape[1], (depth,), generator=generator).to(prompt.device)]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    cache = getattr(out, name, None)
    if cache is None or not hasattr(cache, "crop"):
        raise CaptureError(
            f"--depth needs a model that returns a KV cache; {type(model).__name__} returns none"
        )
    full = torch.cat([ids, prompt], dim=1)
    return {"input_ids": full, "attention_mask": torch.ones_like(full), name: cache, "use_cache": True}, cache
