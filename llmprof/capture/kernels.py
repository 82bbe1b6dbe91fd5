"""One kernel-profiled call: ``torch.profiler`` (Kineto: host operators; CUDA kernels through CUPTI on a GPU)
around a recorded call, its events put on llmprof's clock and attributed to llmprof's steps
(docs/architecture.md, "Kernels"). Run after the measured repeats: a kernel profiler slows a step down.

The profiler's clock is aligned with llmprof's by calibration ranges, each opened right after a host stamp,
before and after the call (the least delayed is kept; the before/after disagreement is saved). An operator belongs to the step whose interval its start lies in (step 1: from the
request's start to the first token; step k: token k-1 to token k); a kernel to the step of the host call that
launched it (by correlation id), wherever it ran later on the device.

Kineto writes a ``USDT: ... profiler_start`` and a ``profiler_stop`` line to stderr (from C++, on fd 2) as a
session starts and stops: kept out of llmprof's output, and nothing else that was written then.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.kernels import EVENT_COLUMNS, HOST, PREFILL_STEP, KernelCapture
from llmprof.analysis.record import Label, RawRequest
from llmprof.errors import CaptureError, UsageError

CALIBRATION = "llmprof calibration"
HOST_CATEGORIES = {"cpu_op", "user_annotation"}
DEVICE_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}
LAUNCH_CATEGORIES = {"cuda_runtime", "cuda_driver"}
DEFAULT_STEPS = 8
DEFAULT_CALLS = 3  # kernel-profiled calls a run (an ab: a variant) makes, for the kernel diff's CI
CALIBRATIONS = 3  # before the call and after it: the least delayed of each is kept
KINETO_LINE = re.compile(rb"USDT:[^\n]*\] profiler_(?:start|stop)\r?\n")


def parse_window(text: str) -> tuple[int, int]:
    """``A:B`` (decode steps A..B inclusive, A >= 2) as a tuple; raises UsageError."""
    try:
        first, last = (int(part) for part in text.split(":"))
    except ValueError:
        raise UsageError(f"--kernels-steps takes A:B (decode steps, e.g. 10:17), not {text!r}") from None
    if not 2 <= first <= last:
        raise UsageError(f"--kernels-steps {text}: decode steps start at 2 and A <= B is needed")
    return first, last


def choose_steps(last_step: int, count: int, window: tuple[int, int] | None) -> list[int]:
    """The decode steps to keep: ``window`` clipped to the generation, else ``count`` steps from its middle."""
    decode = list(range(2, last_step + 1))
    if not decode:
        return []
    if window is not None:
        return [s for s in decode if window[0] <= s <= window[1]]
    count = min(count, len(decode))
    start = (len(decode) - count) // 2
    return decode[start : start + count]


def _calibrate(record_function: Any) -> int:
    """A host stamp, then a calibration range: the stamp, to be matched with the range's start."""
    stamp = time.monotonic_ns()
    with record_function(CALIBRATION):
        pass
    return stamp


@contextlib.contextmanager
def _without_kineto_lines() -> Iterator[None]:
    """What is written to fd 2 inside goes to a file, then back to fd 2 less Kineto's lines."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to keep clean
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = KINETO_LINE.sub(b"", held.read())
            if kept:
                with open(2, "wb", closefd=False) as stderr:
                    stderr.write(kept)


@contextlib.contextmanager
def _session(profile: Any, activities: list[Any]) -> Iterator[Any]:
    """A torch.profiler session, started and stopped without Kineto's lines on stderr."""
    prof = profile(activities=activities)
    with _without_kineto_lines():
        prof.__enter__()
    try:
        yield prof
    finally:
        with _without_kineto_lines():
            prof.__exit__(None, None, None)


_warmed: set[str] = set()


def _warm_up(profile: Any, activities: list[Any], torch: Any) -> None:
    """A first profiler session of the process is slower (its setup, CUPTI's on a GPU): one throwaway
    session, once, so that the first capture (A's in an ``ab``) is not biased against the next."""
    key = str(sorted(str(a) for a in activities))
    if key in _warmed:
        return
    with _session(profile, activities):
        for _ in range(100):
            torch.ones(8).add_(1).sum()
    _warmed.add(key)


def profile_call(
    call: Callable[[], RawRequest], count: int = DEFAULT_STEPS, window: tuple[int, int] | None = None
) -> KernelCapture:
    """Run ``call`` (one recorded request) under torch.profiler; the prefill and the chosen decode steps'
    events. Raises CaptureError when the call generated no decode step in the window."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    _warm_up(profile, activities, torch)
    with _session(profile, activities) as prof:
        stamps = [_calibrate(record_function) for _ in range(CALIBRATIONS)]
        record = call()
        stamps += [_calibrate(record_function) for _ in range(CALIBRATIONS)]
    fd, path = tempfile.mkstemp(suffix=".json", prefix="llmprof-kineto-")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    finally:
        os.unlink(path)
    return from_kineto(doc, record, stamps, count, window)


@dataclass
class _Alignment:
    """Kineto's clock (``base`` ns plus event stamps in us) put on llmprof's host clock by ``offset``;
    ``disagreement_ns``: between the calibrations before and after the call; ``thread``: the calling one."""

    base: int
    offset: int
    disagreement_ns: int
    thread: Any

    def host(self, ts: float) -> int:
        """The host-clock ns of the Kineto stamp ``ts`` (us)."""
        return self.base + round(ts * 1000) + self.offset


def _align(events: list[dict[str, Any]], base: int, stamps: list[int]) -> _Alignment:
    """Match the calibration ranges with ``stamps``; raises CaptureError when their counts differ."""
    calibrations = sorted(
        (e for e in events if e.get("name") == CALIBRATION and e.get("cat") == "user_annotation"),
        key=lambda e: e["ts"],
    )
    if len(calibrations) != len(stamps):
        raise CaptureError(
            f"the kernel profile holds {len(calibrations)} calibration ranges, not {len(stamps)}: cannot align it"
        )
    # a range starts after its stamp: each offset is the true one less a delay, so the largest is the best
    offsets = [stamp - (base + round(e["ts"] * 1000)) for stamp, e in zip(stamps, calibrations)]
    half = len(offsets) // 2
    before, after = max(offsets[: max(half, 1)]), max(offsets[half:])
    return _Alignment(base, max(before, after), abs(before - after), calibrations[0].get("tid"))


def _kept_steps(steps: list[int], count: int, window: tuple[int, int] | None) -> list[int]:
    """The prefill and the decode steps :func:`choose_steps` keeps of a call that generated up to ``steps``;
    raises CaptureError when there is no such decode step."""
    if not steps:
        raise CaptureError("the kernel-profiled call recorded no token")
    kept = [PREFILL_STEP] + choose_steps(steps[-1], count, window)
    if len(kept) == 1:
        raise CaptureError(
            "the kernel-profiled call has no decode step"
            + (f" in --kernels-steps {window[0]}:{window[1]}" if window else "")
            + f" (it generated {steps[-1]} tokens)"
        )
    return kept


def _step_finder(record: RawRequest) -> tuple[list[int], Callable[[int], int | None]]:
    """(the call's steps, the step a host-clock time falls in: None before the request or after its last
    token). The host clock bounds the host work of each step (its operators and launches): step 1 runs from
    t0 to T_1, step k from T_(k-1) to T_k."""
    tokens = record.marks.first(Label.TOKEN)
    steps = sorted(tokens)
    ends = [record.host_ns[tokens[s]] for s in steps]
    t0 = record.window[0]

    def step_of(t: int) -> int | None:
        if t < t0:
            return None
        i = bisect_left(ends, t)
        return steps[i] if i < len(steps) else None

    return steps, step_of


_Row = tuple[str, int, int | None, int, int, int]  # name, device, step, start, duration, self time (ns)


def _host_rows(
    events: list[dict[str, Any]], clock: _Alignment, step_of: Callable[[int], int | None]
) -> Iterator[_Row]:
    """The calling thread's host operators, each in the step its start lies in."""
    for e, own in _host_operators(events, clock.thread):
        start = clock.host(e["ts"])
        yield e["name"], HOST, step_of(start), start, round(e.get("dur", 0) * 1000), own


def _device_rows(
    events: list[dict[str, Any]], clock: _Alignment, step_of: Callable[[int], int | None]
) -> Iterator[_Row]:
    """The device events (kernels, copies, sets), each in the step of the host call that launched it."""
    launches = {
        e["args"]["correlation"]: e["ts"]
        for e in events
        if e.get("cat") in LAUNCH_CATEGORIES and "correlation" in e.get("args", {})
    }
    for e in events:
        if e.get("cat") in DEVICE_CATEGORIES:
            args = e.get("args", {})
            step = step_of(clock.host(launches.get(args.get("correlation"), e["ts"])))
            dur = round(e.get("dur", 0) * 1000)
            yield e["name"], int(args.get("device", 0)), step, clock.host(e["ts"]), dur, dur


def _step_ns(record: RawRequest, kept: list[int]) -> list[int]:
    """Each kept step's own time on the run's clock (device times on a GPU, where the host runs ahead of the
    device): the prefill from the request's start to T_1, step k from T_(k-1) to T_k."""
    tokens = record.marks.first(Label.TOKEN)
    start = record.times[min(record.marks.first(Label.REQUEST_START).values(), default=0)]
    return [
        record.times[tokens[s]] - (start if s == PREFILL_STEP else record.times[tokens[s - 1]]) for s in kept
    ]


def from_kineto(
    doc: dict[str, Any],
    record: RawRequest,
    stamps: list[int],
    count: int = DEFAULT_STEPS,
    window: tuple[int, int] | None = None,
) -> KernelCapture:
    """The capture of a Kineto trace document (``export_chrome_trace``) around ``record``: ``stamps`` are the
    host stamps taken right before each calibration range, in order (half before the call, half after)."""
    events = [
        e for e in doc.get("traceEvents", []) if e.get("ph") == "X" and isinstance(e.get("ts"), (int, float))
    ]
    clock = _align(events, int(doc.get("baseTimeNanoseconds", 0)), stamps)
    steps, step_of = _step_finder(record)
    kept = _kept_steps(steps, count, window)
    wanted = set(kept)
    names: dict[str, int] = {}
    columns: dict[str, list[int]] = {k: [] for k in EVENT_COLUMNS}
    rows = itertools.chain(_host_rows(events, clock, step_of), _device_rows(events, clock, step_of))
    for name, device, step, start, dur, own in rows:
        if step in wanted:
            row = (names.setdefault(name, len(names)), device, step, start, dur, own)
            for key, value in zip(EVENT_COLUMNS, row):
                columns[key].append(value)
    return KernelCapture(
        names=list(names),
        events=columns,
        steps=kept,
        step_ns=_step_ns(record, kept),
        request=record.to_dict(),
        alignment_ns=clock.disagreement_ns,
    )


def _host_operators(events: list[dict[str, Any]], thread: Any) -> list[tuple[dict[str, Any], int]]:
    """The host operators and user ranges of the calling thread (calibrations excluded), each with its self
    time in ns (its duration less its direct children's)."""
    ops = sorted(
        (
            e
            for e in events
            if e.get("cat") in HOST_CATEGORIES and e.get("tid") == thread and e.get("name") != CALIBRATION
        ),
        key=lambda e: (e["ts"], -e.get("dur", 0)),
    )
    own = [round(e.get("dur", 0) * 1000) for e in ops]
    stack: list[int] = []
    for i, e in enumerate(ops):
        while stack and ops[stack[-1]]["ts"] + ops[stack[-1]].get("dur", 0) <= e["ts"]:
            stack.pop()
        if stack:
            own[stack[-1]] -= round(e.get("dur", 0) * 1000)
        stack.append(i)
    return [(e, max(o, 0)) for e, o in zip(ops, own)]
