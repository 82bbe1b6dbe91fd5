"""The cost of context: the least-squares line of a step's time against its context length (its intercept:
reading the weights; its slope: reading the KV cache) with the 95% CI of its slope, whether it is a result, and
how a panel draws it. Never imports torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmprof.analysis.stats import t95

MIN_FIT_POINTS = 3  # distinct context lengths: through 2 any line fits exactly, and says nothing of its error


@dataclass(frozen=True)
class ContextFit:
    """A least-squares line of ms against context length: ``intercept`` (ms: reading the weights), ``per_1k``
    (ms per 1k tokens: reading the KV cache) with its 95% CI (``low``, ``high``), over ``distinct`` lengths."""

    intercept: float
    per_1k: float
    low: float
    high: float
    distinct: int

    @property
    def problem(self) -> str | None:
        """Why the fit is not a result (too few lengths; a slope whose CI holds zero or lies below it); None
        when it is one."""
        if self.distinct < MIN_FIT_POINTS:
            return f"fit over {self.distinct} points: not a result"
        ci = f"slope CI {self.low:+.3f} .. {self.high:+.3f} ms per 1k tokens"
        if self.low <= 0 <= self.high:
            return f"KV cost not resolved: {ci}"
        return f"KV cost negative ({ci}): noise, not a result" if self.high < 0 else None

    def describe(self) -> str:
        """The fit as a legend says it: its line and the slope's CI, or why it is not a result."""
        sign = "+" if self.per_1k >= 0 else "-"
        return self.problem or (
            f"fit {self.intercept:.3f} ms {sign} {abs(self.per_1k):.3f} ms per 1k tokens"
            f" (95% CI {self.low:.3f} .. {self.high:.3f})"
        )


def fit_context_cost(points: Any) -> ContextFit | None:
    """The least-squares line through (context length, ms) pairs (a sequence, or an array of two columns), with
    the 95% CI of its slope from its standard error (Student's t); None under two distinct lengths."""
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    distinct = len(np.unique(x))
    if distinct < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    spread = float(np.sum((x - x.mean()) ** 2))
    df = len(x) - 2
    if df > 0:
        residual = float(np.sum((y - (intercept + slope * x)) ** 2)) / df
        half = t95(df) * math.sqrt(residual / spread)
    else:
        half = math.inf
    per_1k = float(slope) * 1000.0
    return ContextFit(float(intercept), per_1k, per_1k - half * 1000.0, per_1k + half * 1000.0, distinct)


def draw_fit(ax: Any, fit: ContextFit, ends: list[float], colour: str, prefix: str = "") -> None:
    """A fit in a panel: its dotted line over ``ends`` (x) with its figures in the legend, or, when it is not a
    result, only a legend entry saying so (no line)."""
    if fit.problem is not None:
        ax.plot([], [], ls="none", label=f"{prefix}{fit.problem}")
        return
    line = [fit.intercept + fit.per_1k * x / 1e3 for x in ends]
    ax.plot(ends, line, ":", color=colour, lw=1.5, label=f"{prefix}{fit.describe()}")
