"""Repeats -> summary statistics with a bootstrap confidence interval. Pure Python, no torch.

The unit of resampling is the generation (one value per request): steps inside one generation are
correlated, so resampling steps would understate the spread.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Summary:
    """Distribution of one metric over the measured repeats."""

    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    p90: float
    p99: float
    ci95_low: float
    ci95_high: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float] = statistics.median,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over ``values``."""
    if len(values) < 2:
        v = statistic(values)
        return v, v
    rng = random.Random(seed)
    k = len(values)
    estimates = sorted(statistic(rng.choices(values, k=k)) for _ in range(resamples))
    alpha = (1.0 - confidence) / 2.0
    return percentile(estimates, 100 * alpha), percentile(estimates, 100 * (1 - alpha))


def summarize(values: Sequence[float]) -> Summary | None:
    """Summary of one metric's values over repeats; None when there is no value."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    low, high = bootstrap_ci(values)
    return Summary(
        n=len(values),
        median=statistics.median(values),
        mean=statistics.fmean(values),
        stdev=statistics.stdev(values) if len(values) > 1 else 0.0,
        min=min(values),
        max=max(values),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        ci95_low=low,
        ci95_high=high,
    )


def two_sample_ci(
    a: Sequence[float],
    b: Sequence[float],
    combine: Callable[[float, float], float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``combine(median(a), median(b))``, each side resampled by its own
    units (generations, or the steps of a capture)."""
    rng = random.Random(seed)
    estimates = []
    for _ in range(resamples):
        median_a = statistics.median(rng.choices(a, k=len(a)))
        estimates.append(combine(median_a, statistics.median(rng.choices(b, k=len(b)))))
    estimates.sort()
    return percentile(estimates, 2.5), percentile(estimates, 97.5)
