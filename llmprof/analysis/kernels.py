"""The kernels of a step: what the kernel-profiled calls left (operators and device kernels, each attributed to
its llmprof step), their table per phase, and the kernel diff of two runs. Pure Python, no torch.

A capture holds raw events, never derived numbers: per event its name, device (-1: a host operator, N: a kernel
on GPU N), llmprof step (1 = prefill and the first token, k >= 2 = decode step k), start and duration on
llmprof's clock, its self time (the duration less its child operators') and, when several calls were captured,
its call (0, 1, ...); and per call the time of each captured step on that call's own timeline. Tables and diffs
are recomputed from them (docs/architecture.md, "Kernels").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmprof.analysis.fields import fail, is_int
from llmprof.analysis.stats import welch_ci

PREFILL_STEP = 1
PHASES = ("prefill", "decode")
HOST = -1  # the device of a host operator
EVENT_COLUMNS = ("name", "device", "step", "start_ns", "dur_ns", "self_ns")
CALL = "call"  # the events' column of the call, present when several calls were captured
# the diff's CI is over calls (Welch's t on each call's mean); with fewer a side it has none (2 a side: one
# degree of freedom, an interval as wide as 12.7 standard errors). A bootstrap over 3 calls was far too narrow:
# the demo's aten::mm "changed" by +-0.1..0.2 ms (2-4%) in 2 of 6 A/A-like diffs beside a busy core
MIN_CALLS = 3
# a significant change under this share of A's step is "negligible": with ~50 operators each judged at 95%, tiny
# ones (a few us) would be "changed" by chance in every diff; never applied to the TPOT change's sum
MIN_EFFECT = 0.005


@dataclass
class KernelCapture:
    """What the kernel-profiled calls left: their events (columns of EVENT_COLUMNS, ``name`` indexing
    ``names``; with several calls a ``call`` column too), the steps captured with each one's time on the first
    call's timeline (``step_ns``) and on each later call's (``later_step_ns``: the same steps), the first call's
    raw record, and how well the profiler's clock was aligned with llmprof's (the worst calibration
    disagreement of a call)."""

    names: list[str]
    events: dict[str, list[int]]
    steps: list[int]
    step_ns: list[int]
    request: dict[str, Any] | None = None
    alignment_ns: int = 0
    source: str = "torch.profiler"
    later_step_ns: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the run file's ``kernels``); a capture of one call is written as before calls
        were counted (no ``call`` column, no ``later_step_ns``)."""
        events = {k: self.events[k] for k in EVENT_COLUMNS}
        if self.later_step_ns:
            events[CALL] = self.call_of_events()
        return {
            "source": self.source,
            "names": self.names,
            "events": events,
            "steps": self.steps,
            "step_ns": self.step_ns,
            "alignment_ns": self.alignment_ns,
            "request": self.request,
            **({"later_step_ns": self.later_step_ns} if self.later_step_ns else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> KernelCapture:
        """Parse and validate a run file's ``kernels``; raises RunFormatError naming the field that is wrong."""
        check_capture(data)
        columns = EVENT_COLUMNS + ((CALL,) if CALL in data["events"] else ())
        return cls(
            names=list(data["names"]),
            events={k: list(data["events"][k]) for k in columns},
            steps=list(data["steps"]),
            step_ns=list(data["step_ns"]),
            request=data.get("request"),
            alignment_ns=int(data.get("alignment_ns", 0)),
            source=str(data.get("source", "torch.profiler")),
            later_step_ns=[list(v) for v in data.get("later_step_ns", [])],
        )

    @classmethod
    def join(cls, captures: list[KernelCapture]) -> KernelCapture:
        """One capture of several calls (each a capture of one call, all of the same steps), in order: the
        first call's record is kept."""
        first = captures[0]
        if any(c.steps != first.steps or c.later_step_ns for c in captures):
            raise ValueError("only captures of one call each, of the same steps, can be joined")
        names = list(dict.fromkeys(n for c in captures for n in c.names))
        index = {n: i for i, n in enumerate(names)}
        events: dict[str, list[int]] = {k: [] for k in (*EVENT_COLUMNS, CALL)}
        for call, c in enumerate(captures):
            for key in EVENT_COLUMNS:
                events[key] += [index[c.names[n]] for n in c.events[key]] if key == "name" else c.events[key]
            events[CALL] += [call] * len(c.events["name"])
        return cls(
            names=names,
            events=events,
            steps=first.steps,
            step_ns=first.step_ns,
            request=first.request,
            alignment_ns=max(c.alignment_ns for c in captures),
            source=first.source,
            later_step_ns=[c.step_ns for c in captures[1:]],
        )

    @property
    def calls(self) -> int:
        """How many calls were captured."""
        return 1 + len(self.later_step_ns)

    def call_of_events(self) -> list[int]:
        """Each event's call (all 0 in a capture of one call)."""
        return self.events.get(CALL) or [0] * len(self.events["name"])

    @property
    def has_device(self) -> bool:
        """Whether the capture holds device kernels (a GPU run), not only host operators."""
        return any(d != HOST for d in self.events["device"])

    def phase_steps(self, phase: str) -> list[int]:
        """The captured steps of ``phase`` (prefill: step 1; decode: the steps >= 2)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
        return [s for s in self.steps if (s == PREFILL_STEP) == (phase == "prefill")]

    def totals(self) -> dict[tuple[str, int, int, int], tuple[int, int]]:
        """Per (name, device, call, step): calls and time in ns (a kernel's duration, a host operator's self
        time)."""
        out: dict[tuple[str, int, int, int], tuple[int, int]] = {}
        e = self.events
        rows = zip(e["name"], e["device"], self.call_of_events(), e["step"], e["dur_ns"], e["self_ns"])
        for name, dev, call, step, dur, own in rows:
            key = (self.names[name], dev, call, step)
            calls, time = out.get(key, (0, 0))
            out[key] = (calls + 1, time + (own if dev == HOST else dur))
        return out

    def per_step(self, phase: str) -> dict[str, dict[tuple[int, int], tuple[int, int]]]:
        """Per name, per (call, captured step of ``phase``): (calls, time in ns). Device kernels when the
        capture has any, else host operators."""
        steps = set(self.phase_steps(phase))
        device = self.has_device
        out: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}
        for (name, dev, call, step), (calls, time) in self.totals().items():
            if step in steps and (dev != HOST) == device:
                before = out.setdefault(name, {}).get((call, step), (0, 0))
                out[name][call, step] = (before[0] + calls, before[1] + time)
        return out

    def step_time(self, step: int, call: int = 0) -> int:
        """The time of ``step`` on the timeline of captured call ``call`` (ns)."""
        return ([self.step_ns, *self.later_step_ns][call])[self.steps.index(step)]


def _positive_ints(value: Any) -> bool:
    return isinstance(value, list) and all(is_int(v) and v > 0 for v in value)


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(is_int(v) for v in value)


# what a run file's ``kernels`` must be, in the order checked (each rule may rely on those before it): the field
# (under ``kernels``), the message when the rule does not hold, the rule
CAPTURE_RULES: tuple[tuple[str, str, Callable[[dict[str, Any]], bool]], ...] = (
    (
        "names",
        "a list of strings is needed",
        lambda d: isinstance(d.get("names"), list) and all(isinstance(n, str) for n in d["names"]),
    ),
    ("steps", "a list of positive integers is needed", lambda d: _positive_ints(d.get("steps"))),
    ("step_ns", "a list of positive integers is needed", lambda d: _positive_ints(d.get("step_ns"))),
    (
        "steps",
        "distinct steps, one step_ns each, are needed",
        lambda d: len(d["steps"]) == len(d["step_ns"]) == len(set(d["steps"])),
    ),
    ("events", "an object of columns is needed", lambda d: isinstance(d.get("events"), dict)),
    *(
        (f"events.{key}", "a list of integers is needed", lambda d, key=key: _ints(d["events"].get(key)))
        for key in EVENT_COLUMNS
    ),
    (
        "events",
        "its columns have different lengths",
        lambda d: len({len(d["events"][key]) for key in EVENT_COLUMNS}) == 1,
    ),
    (
        "events.name",
        "an index out of kernels.names",
        lambda d: all(0 <= n < len(d["names"]) for n in d["events"]["name"]),
    ),
    ("events.step", "a step that was not captured", lambda d: set(d["events"]["step"]) <= set(d["steps"])),
    (
        "events.device",
        "-1 (host) or a device index is needed",
        lambda d: all(v >= HOST for v in d["events"]["device"]),
    ),
    (
        "events",
        "a negative duration",
        lambda d: all(v >= 0 for key in ("dur_ns", "self_ns") for v in d["events"][key]),
    ),
    (
        "later_step_ns",
        "per later call a list of positive integers, one a step, is needed",
        lambda d: (
            isinstance(d.get("later_step_ns", []), list)
            and all(_positive_ints(v) and len(v) == len(d["steps"]) for v in d.get("later_step_ns", []))
        ),
    ),
    (
        f"events.{CALL}",
        "a list of integers, one an event, is needed",
        lambda d: (
            CALL not in d["events"]
            or (isinstance(d["events"][CALL], list) and len(d["events"][CALL]) == len(d["events"]["name"]))
        ),
    ),
    (
        f"events.{CALL}",
        "a call that was not captured",
        lambda d: all(
            is_int(c) and 0 <= c <= len(d.get("later_step_ns", [])) for c in d["events"].get(CALL, [])
        ),
    ),
    ("request", "an object is needed", lambda d: d.get("request") is None or isinstance(d["request"], dict)),
    ("alignment_ns", "an integer is needed", lambda d: is_int(d.get("alignment_ns", 0))),
)


def check_capture(data: Any) -> None:
    """Validate a run file's ``kernels`` (:data:`CAPTURE_RULES`, in order); raises RunFormatError naming the
    first field that is wrong."""
    if not isinstance(data, dict):
        raise fail("kernels", "an object is needed")
    for key, what, holds in CAPTURE_RULES:
        if not holds(data):
            raise fail(f"kernels.{key}", what)


# -- the table of a phase ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelRow:
    """One operator or kernel in a phase: calls and time per step (medians over the calls of each call's
    median over its captured steps), share of the step's median time."""

    name: str
    calls: float
    time_ns: float
    share: float


@dataclass
class KernelTable:
    """The top operators/kernels of a phase, their per-step sum, and the step's own time (medians over the
    calls of each call's median over its steps)."""

    phase: str
    steps: list[int]
    rows: list[KernelRow] = field(default_factory=list)
    total_ns: float = 0.0  # all operators/kernels of a step
    step_ns: float = 0.0  # the step's time on the captured calls' timelines
    calls: int = 1

    @property
    def idle_share(self) -> float:
        """The share of the step no operator/kernel covers: on a GPU device idle (launch gaps, host waits), on
        the CPU the host work outside operators (Python, the generate loop)."""
        return max(1.0 - self.total_ns / self.step_ns, 0.0) if self.step_ns else 0.0


def _over_calls(values: dict[tuple[int, int], float], calls: int, steps: list[int], of_call: Any) -> float:
    """The median over the calls of ``of_call`` (median or mean) of each call's values over ``steps``
    (missing ones 0)."""
    return statistics.median(of_call([values.get((c, s), 0.0) for s in steps]) for c in range(calls))


def kernel_table(capture: KernelCapture, phase: str, top: int | None = None) -> KernelTable:
    """The ``top`` operators/kernels of ``phase`` by median time per step (all when None)."""
    steps = capture.phase_steps(phase)
    table = KernelTable(phase, steps, calls=capture.calls)
    if not steps:
        return table
    calls, median = capture.calls, statistics.median
    step_times = {(c, s): float(capture.step_time(s, c)) for c in range(calls) for s in steps}
    table.step_ns = _over_calls(step_times, calls, steps, median)
    totals: dict[tuple[int, int], float] = {}
    rows = []
    for name, per in capture.per_step(phase).items():
        for key, (_, t) in per.items():
            totals[key] = totals.get(key, 0.0) + t
        time = _over_calls({k: v[1] for k, v in per.items()}, calls, steps, median)
        count = _over_calls({k: v[0] for k, v in per.items()}, calls, steps, median)
        rows.append(KernelRow(name, count, time, time / table.step_ns if table.step_ns else 0.0))
    rows.sort(key=lambda r: (-r.time_ns, r.name))
    table.rows = rows if top is None else rows[:top]
    table.total_ns = _over_calls(totals, calls, steps, median)
    return table


# -- the diff of two captures ------------------------------------------------------------------------------
NO_CI = "no CI"  # the verdict of a change with too few calls a side for a CI


@dataclass(frozen=True)
class KernelChange:
    """One operator/kernel of B against A: time per step on each side (the mean over the calls of each call's
    mean over its captured steps), the change with its 95% CI over the calls (Welch's t; NaN with fewer than
    MIN_CALLS a side), and whether it is only on one side."""

    name: str
    a_ns: float
    b_ns: float
    change_ns: float
    ci_low_ns: float
    ci_high_ns: float
    status: str = ""  # "added" (only in B), "removed" (only in A), "" (both)

    @property
    def significant(self) -> bool:
        """Whether there is a CI and it excludes zero."""
        return not math.isnan(self.ci_low_ns) and not self.ci_low_ns <= 0.0 <= self.ci_high_ns


@dataclass
class KernelDiff:
    """Every operator/kernel of a phase, B against A, ranked by absolute change; the change of the part of the
    step outside them (the same statistic), the TPOT change of the measured repeats, the calls and steps
    captured on each side."""

    phase: str
    changes: list[KernelChange]
    outside_change_ns: float = 0.0
    tpot_change_ns: float | None = None
    steps: tuple[list[int], list[int]] = ([], [])  # the captured steps of A and of B
    calls: tuple[int, int] = (1, 1)
    step_ns_a: float = 0.0  # A's step (the mean over its calls of each call's mean)
    has_device: bool = False  # device kernels (outside them: device idle), else host operators

    @property
    def has_ci(self) -> bool:
        """Whether each side captured enough calls (MIN_CALLS) for a CI."""
        return min(self.calls) >= MIN_CALLS

    @property
    def warnings(self) -> list[str]:
        """What may confound the diff: the two sides captured different steps (other context lengths)."""
        a, b = self.steps
        if a == b or not (a and b):
            return []
        steps = f"A {a[0]}..{a[-1]}, B {b[0]}..{b[-1]}"
        return [f"the kernel captures are of different decode steps ({steps}): their context lengths differ"]

    def verdict(self, change: KernelChange) -> str:
        """ "added", "removed", "changed" (the CI over calls excludes zero and the change is at least
        MIN_EFFECT of A's step), "negligible" (significant, smaller), "no significant change", or NO_CI (too
        few calls)."""
        if change.status:
            return change.status
        if not self.has_ci:
            return NO_CI
        if not change.significant:
            return "no significant change"
        return "changed" if abs(change.change_ns) >= MIN_EFFECT * self.step_ns_a else "negligible"

    def moved(self, change: KernelChange) -> bool:
        """Whether the change is changed, added or removed."""
        return self.verdict(change) in ("changed", "added", "removed")

    def accounting(self, top: int) -> tuple[list[KernelChange], float, float, float] | None:
        """The TPOT change as a sum: the listed (first ``top``) changes that moved, the sum of every other
        operator/kernel's change, the change outside operators, and the rest (what the captured calls do not
        explain: the measured repeats' TPOT change less the others). None without a TPOT change."""
        if self.tpot_change_ns is None:
            return None
        named = [c for c in self.changes[:top] if self.moved(c)]
        others = sum(c.change_ns for c in self.changes if c not in named)
        rest = self.tpot_change_ns - sum(c.change_ns for c in named) - others - self.outside_change_ns
        return named, others, self.outside_change_ns, rest


def call_means(capture: KernelCapture, phase: str) -> tuple[dict[str, list[float]], list[float], list[float]]:
    """Per name, each call's mean time per captured step of ``phase``; and each call's mean step time less
    every operator/kernel's (outside them)."""
    steps, calls = capture.phase_steps(phase), capture.calls
    covered = {c: 0.0 for c in range(calls)}
    out = {}
    for name, per in capture.per_step(phase).items():
        out[name] = [statistics.fmean(per.get((c, s), (0, 0))[1] for s in steps) for c in range(calls)]
        for c in range(calls):
            covered[c] += out[name][c]
    step = [statistics.fmean(capture.step_time(s, c) for s in steps) for c in range(calls)]
    return out, [step[c] - covered[c] for c in range(calls)], step


def kernel_diff(
    a: KernelCapture, b: KernelCapture, phase: str = "decode", tpot_change_ns: float | None = None
) -> KernelDiff:
    """B against A per operator/kernel of ``phase`` (a name missing on one side counts 0 there: added or
    removed), ranked by absolute change: each call's mean time per step, then the mean over the calls and the
    95% CI of B - A over each side's calls (Welch's t; none with fewer than MIN_CALLS a side). Means add up:
    the rows, the part outside them and the step's change are one sum."""
    diff = KernelDiff(
        phase, [], tpot_change_ns=tpot_change_ns, steps=(a.phase_steps(phase), b.phase_steps(phase))
    )
    diff.calls, diff.has_device = (a.calls, b.calls), a.has_device or b.has_device
    if not (diff.steps[0] and diff.steps[1]):
        return diff
    (times_a, outside_a, step_a), (times_b, outside_b, _) = call_means(a, phase), call_means(b, phase)
    mean = statistics.fmean
    diff.step_ns_a = mean(step_a)
    diff.outside_change_ns = mean(outside_b) - mean(outside_a)
    zeros_a, zeros_b = [0.0] * a.calls, [0.0] * b.calls
    nan = float("nan")
    for name in sorted(times_a.keys() | times_b.keys()):
        va, vb = times_a.get(name, zeros_a), times_b.get(name, zeros_b)
        low, high = welch_ci(va, vb) if diff.has_ci else (nan, nan)
        status = "added" if name not in times_a else "removed" if name not in times_b else ""
        diff.changes.append(KernelChange(name, mean(va), mean(vb), mean(vb) - mean(va), low, high, status))
    diff.changes.sort(key=lambda c: (-abs(c.change_ns), c.name))
    return diff
