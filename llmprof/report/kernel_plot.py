"""The kernel panels of a figure: each captured decode step stacked by its top operators/kernels, the others and
the part none covers; of a run (``--kernels``), or of A and B side by side on the same names. Never imports
torch."""

from __future__ import annotations

from typing import Any

from llmprof.analysis.kernels import KernelCapture, KernelDiff, kernel_table
from llmprof.report.figure import COLOURS
from llmprof.runfile import Run

KERNEL_SERIES = 8  # operators/kernels stacked by name in the kernels panel; the rest as one


def kernels_panel(ax: Any, run: Run) -> None:
    """Stacked time per captured decode step by the top operators/kernels, the rest, and the uncovered part."""
    capture = run.kernels
    if capture is None:
        return
    top = [row.name for row in kernel_table(capture, "decode").rows[:KERNEL_SERIES]]
    kernel_stack(ax, capture, top, kernel_colours(top), "Kernels: where each captured decode step went")


def kernel_colours(names: list[str]) -> dict[str, str]:
    """A colour per name, in order (the same names: the same colours, in every panel)."""
    return {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}


def diff_names(diff: KernelDiff) -> list[str]:
    """The names to stack in A and B alike: those that changed (or were added/removed) first, in the diff's
    order, then the largest on either side."""
    moved = [c.name for c in diff.changes if diff.verdict(c) in ("changed", "added", "removed")]
    largest = [c.name for c in sorted(diff.changes, key=lambda c: -max(c.a_ns, c.b_ns))]
    names = list(dict.fromkeys(moved + largest))
    return names[:KERNEL_SERIES]


def kernel_stack(
    ax: Any, capture: KernelCapture, top: list[str], colours: dict[str, str], title: str, legend: bool = True
) -> None:
    """Each captured decode step of ``capture``'s first call stacked by the names ``top``, the others as one,
    and the part no operator/kernel covers."""
    steps = capture.phase_steps("decode")
    per_step = capture.per_step("decode")
    shown = [name for name in top if name in per_step]
    series = [
        (name, [per_step[name].get((0, s), (0, 0))[1] / 1e6 for s in steps], colours[name]) for name in shown
    ]
    rest = [n for n in per_step if n not in shown]
    others = [sum(per_step[n].get((0, s), (0, 0))[1] for n in rest) / 1e6 for s in steps]
    series.append((f"{len(rest)} others", others, "#bbbbbb"))
    covered = [sum(values[i] for _, values, _ in series) for i in range(len(steps))]
    outside = "device idle" if capture.has_device else "outside operators"
    idle = [max(capture.step_time(s) / 1e6 - c, 0.0) for s, c in zip(steps, covered)]
    series.append((outside, idle, "#eeeeee"))
    bottom = [0.0] * len(steps)
    positions = list(range(len(steps)))
    for name, values, colour in series:
        ax.bar(positions, values, bottom=bottom, color=colour, label=name, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(positions, [str(s) for s in steps])
    first = f"first of {capture.calls} profiled calls" if capture.calls > 1 else "the profiled call"
    ax.set_xlabel(f"decode step ({first})")  # two panels side by side: a label either fits
    ax.set_ylabel("time per step (ms)")
    what = "device kernels" if capture.has_device else "host operators, by self time"
    ax.set_title(f"{title}\n({what})", fontsize=10)
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
