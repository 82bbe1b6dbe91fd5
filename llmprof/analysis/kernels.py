"""The kernels of a step: what one kernel-profiled call left (operators and device kernels, each attributed to
its llmprof step), their table per phase, and the kernel diff of two runs. Pure Python, no torch.

A capture holds raw events, never derived numbers: per event its name, device (-1: a host operator, N: a kernel
on GPU N), llmprof step (1 = prefill and the first token, k >= 2 = decode step k), start and duration on
llmprof's clock and its self time (the duration less its child operators'); and per captured step its time on
the captured call's own timeline. Tables and diffs are recomputed from them (docs/architecture.md, "Kernels").
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from llmprof.analysis.stats import two_sample_ci
from llmprof.errors import RunFormatError

PREFILL_STEP = 1
PHASES = ("prefill", "decode")
HOST = -1  # the device of a host operator
EVENT_COLUMNS = ("name", "device", "step", "start_ns", "dur_ns", "self_ns")
DIFF_RESAMPLES = 1000
# A change smaller than this share of A's step is negligible, whatever its CI: the captured steps of one call
# share its conditions (a neighbour's load slows them all), so a tiny shift can look significant
MIN_EFFECT = 0.02


@dataclass
class KernelCapture:
    """What one kernel-profiled call left: its events (columns of EVENT_COLUMNS, ``name`` indexing ``names``),
    the steps captured with their time on the call's own timeline, the call's raw record, and how well the
    profiler's clock was aligned with llmprof's (the two calibrations' disagreement)."""

    names: list[str]
    events: dict[str, list[int]]
    steps: list[int]
    step_ns: list[int]
    request: dict[str, Any] | None = None
    alignment_ns: int = 0
    source: str = "torch.profiler"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the run file's ``kernels``)."""
        return {
            "source": self.source,
            "names": self.names,
            "events": self.events,
            "steps": self.steps,
            "step_ns": self.step_ns,
            "alignment_ns": self.alignment_ns,
            "request": self.request,
        }

    @classmethod
    def from_dict(cls, data: Any) -> KernelCapture:
        """Parse and validate a run file's ``kernels``; raises RunFormatError naming the field that is wrong."""
        check_capture(data)
        return cls(
            names=list(data["names"]),
            events={k: list(data["events"][k]) for k in EVENT_COLUMNS},
            steps=list(data["steps"]),
            step_ns=list(data["step_ns"]),
            request=data.get("request"),
            alignment_ns=int(data.get("alignment_ns", 0)),
            source=str(data.get("source", "torch.profiler")),
        )

    @property
    def has_device(self) -> bool:
        """Whether the capture holds device kernels (a GPU run), not only host operators."""
        return any(d != HOST for d in self.events["device"])

    def phase_steps(self, phase: str) -> list[int]:
        """The captured steps of ``phase`` (prefill: step 1; decode: the steps >= 2)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
        return [s for s in self.steps if (s == PREFILL_STEP) == (phase == "prefill")]

    def totals(self) -> dict[tuple[str, int, int], tuple[int, int]]:
        """Per (name, device, step): calls and time in ns (a kernel's duration, a host operator's self time)."""
        out: dict[tuple[str, int, int], tuple[int, int]] = {}
        e = self.events
        for name, dev, step, dur, own in zip(e["name"], e["device"], e["step"], e["dur_ns"], e["self_ns"]):
            key = (self.names[name], dev, step)
            calls, time = out.get(key, (0, 0))
            out[key] = (calls + 1, time + (own if dev == HOST else dur))
        return out

    def per_step(self, phase: str) -> dict[str, dict[int, tuple[int, int]]]:
        """Per name, per captured step of ``phase``: (calls, time in ns). Device kernels when the capture has
        any, else host operators."""
        steps = set(self.phase_steps(phase))
        device = self.has_device
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for (name, dev, step), (calls, time) in self.totals().items():
            if step in steps and (dev != HOST) == device:
                before = out.setdefault(name, {}).get(step, (0, 0))
                out[name][step] = (before[0] + calls, before[1] + time)
        return out

    def step_time(self, step: int) -> int:
        """The captured call's time of ``step`` on its own timeline (ns)."""
        return self.step_ns[self.steps.index(step)]


def check_capture(data: Any) -> None:
    """Validate a run file's ``kernels``; raises RunFormatError naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise _fail("kernels", "an object is needed")
    names, events, steps, step_ns = (data.get(k) for k in ("names", "events", "steps", "step_ns"))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail("kernels.names", "a list of strings is needed")
    for key, value in (("steps", steps), ("step_ns", step_ns)):
        if not isinstance(value, list) or not all(_is_int(v) and v > 0 for v in value):
            raise _fail(f"kernels.{key}", "a list of positive integers is needed")
    if len(steps) != len(step_ns) or len(set(steps)) != len(steps):
        raise _fail("kernels.steps", "distinct steps, one step_ns each, are needed")
    if not isinstance(events, dict):
        raise _fail("kernels.events", "an object of columns is needed")
    lengths = set()
    for key in EVENT_COLUMNS:
        column = events.get(key)
        if not isinstance(column, list) or not all(_is_int(v) for v in column):
            raise _fail(f"kernels.events.{key}", "a list of integers is needed")
        lengths.add(len(column))
    if len(lengths) != 1:
        raise _fail("kernels.events", "its columns have different lengths")
    if any(not 0 <= n < len(names) for n in events["name"]):
        raise _fail("kernels.events.name", "an index out of kernels.names")
    if any(s not in set(steps) for s in events["step"]):
        raise _fail("kernels.events.step", "a step that was not captured")
    if any(d < HOST for d in events["device"]):
        raise _fail("kernels.events.device", "-1 (host) or a device index is needed")
    if any(v < 0 for k in ("dur_ns", "self_ns") for v in events[k]):
        raise _fail("kernels.events", "a negative duration")
    if data.get("request") is not None and not isinstance(data["request"], dict):
        raise _fail("kernels.request", "an object is needed")
    if not _is_int(data.get("alignment_ns", 0)):
        raise _fail("kernels.alignment_ns", "an integer is needed")


def _fail(where: str, what: str) -> RunFormatError:
    return RunFormatError(f"malformed llmprof run: {where}: {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- the table of a phase ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelRow:
    """One operator or kernel in a phase: calls and time per step (medians over the captured steps), share of
    the step's median time."""

    name: str
    calls: float
    time_ns: float
    share: float


@dataclass
class KernelTable:
    """The top operators/kernels of a phase, their per-step sum, and the step's own time (medians)."""

    phase: str
    steps: list[int]
    rows: list[KernelRow] = field(default_factory=list)
    total_ns: float = 0.0  # all operators/kernels of a step (median over steps)
    step_ns: float = 0.0  # the step's time on the captured call's timeline (median over steps)

    @property
    def idle_share(self) -> float:
        """The share of the step no operator/kernel covers: on a GPU device idle (launch gaps, host waits), on
        the CPU the host work outside operators (Python, the generate loop)."""
        return max(1.0 - self.total_ns / self.step_ns, 0.0) if self.step_ns else 0.0


def kernel_table(capture: KernelCapture, phase: str, top: int | None = None) -> KernelTable:
    """The ``top`` operators/kernels of ``phase`` by median time per step (all when None)."""
    steps = capture.phase_steps(phase)
    table = KernelTable(phase, steps)
    if not steps:
        return table
    per_step = capture.per_step(phase)
    table.step_ns = statistics.median(capture.step_time(s) for s in steps)
    totals = {s: 0 for s in steps}
    rows = []
    for name, per in per_step.items():
        for s, (_, t) in per.items():
            totals[s] += t
        time = statistics.median(per.get(s, (0, 0))[1] for s in steps)
        calls = statistics.median(per.get(s, (0, 0))[0] for s in steps)
        rows.append(KernelRow(name, calls, time, time / table.step_ns if table.step_ns else 0.0))
    rows.sort(key=lambda r: (-r.time_ns, r.name))
    table.rows = rows if top is None else rows[:top]
    table.total_ns = statistics.median(totals.values())
    return table


# -- the diff of two captures ------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelChange:
    """One operator/kernel of B against A: median time per step on each side, the change with its 95%
    bootstrap CI over the captured steps, and whether it is only on one side."""

    name: str
    a_ns: float
    b_ns: float
    change_ns: float
    ci_low_ns: float
    ci_high_ns: float
    status: str = ""  # "added" (only in B), "removed" (only in A), "" (both)

    @property
    def significant(self) -> bool:
        """Whether the CI excludes zero."""
        return not self.ci_low_ns <= 0.0 <= self.ci_high_ns


@dataclass
class KernelDiff:
    """Every operator/kernel of a phase, B against A, ranked by absolute change; A's step time (median over
    its captured steps) and the TPOT change of the measured repeats."""

    phase: str
    changes: list[KernelChange]
    step_ns_a: float = 0.0
    tpot_change_ns: float | None = None
    steps: tuple[list[int], list[int]] = ([], [])  # the captured steps of A and of B

    @property
    def warnings(self) -> list[str]:
        """What may confound the diff: the two sides captured different steps (other context lengths)."""
        a, b = self.steps
        if a == b:
            return []
        return (
            [
                f"the kernel captures are of different decode steps (A {a[0]}..{a[-1]}, B {b[0]}..{b[-1]}): their context lengths differ"
            ]
            if a and b
            else []
        )

    def changed(self, change: KernelChange) -> bool:
        """A significant change (CI excludes zero) of at least MIN_EFFECT of A's step."""
        return change.significant and abs(change.change_ns) >= MIN_EFFECT * self.step_ns_a

    def verdict(self, change: KernelChange) -> str:
        """ "added", "removed", "changed", "negligible" (significant, under MIN_EFFECT of a step) or
        "no significant change"."""
        if change.status:
            return change.status
        if self.changed(change):
            return "changed"
        return "negligible" if change.significant else "no significant change"

    def explained(self, top: int) -> float | None:
        """The share of the TPOT change the ``top`` listed changes explain (the sum of those that changed, were
        added or removed); None without a TPOT change."""
        if not self.tpot_change_ns:
            return None
        shown = [c.change_ns for c in self.changes[:top] if c.status or self.changed(c)]
        return sum(shown) / self.tpot_change_ns


def _per_step_times(capture: KernelCapture, phase: str) -> dict[str, list[float]]:
    steps = capture.phase_steps(phase)
    return {
        name: [float(per.get(s, (0, 0))[1]) for s in steps] for name, per in capture.per_step(phase).items()
    }


def kernel_diff(
    a: KernelCapture, b: KernelCapture, phase: str = "decode", tpot_change_ns: float | None = None
) -> KernelDiff:
    """B against A per operator/kernel of ``phase`` (a name missing on one side counts 0 there: added or
    removed), ranked by absolute change of the median time per step."""
    times_a, times_b = _per_step_times(a, phase), _per_step_times(b, phase)
    zeros_a, zeros_b = [0.0] * len(a.phase_steps(phase)), [0.0] * len(b.phase_steps(phase))
    changes = []
    if zeros_a and zeros_b:
        for name in sorted(times_a.keys() | times_b.keys()):
            va, vb = times_a.get(name, zeros_a), times_b.get(name, zeros_b)
            low, high = two_sample_ci(va, vb, lambda ma, mb: mb - ma, DIFF_RESAMPLES)
            status = "added" if name not in times_a else "removed" if name not in times_b else ""
            ma, mb = statistics.median(va), statistics.median(vb)
            changes.append(KernelChange(name, ma, mb, mb - ma, low, high, status))
    changes.sort(key=lambda c: (-abs(c.change_ns), c.name))
    steps = a.phase_steps(phase)
    step_ns = statistics.median(a.step_time(s) for s in steps) if steps else 0.0
    return KernelDiff(phase, changes, step_ns, tpot_change_ns, (steps, b.phase_steps(phase)))
