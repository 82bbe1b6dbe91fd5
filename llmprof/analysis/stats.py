"""Repeats -> summary statistics with a bootstrap confidence interval. numpy, no torch.

The unit of resampling is the generation (one value per request): steps inside one generation are
correlated, so resampling steps would understate the spread.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

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


def resampled_medians(values: Sequence[float], rng: np.random.RandomState, resamples: int) -> np.ndarray:
    """The medians of ``resamples`` resamples (with replacement) of ``values``, one row of draws each, from
    ``rng``'s next ``resamples * len(values)`` uniforms: the very draws and medians of ``random.Random`` with
    the same state calling ``choices(values, k=len(values))`` per resample (``floor(random() * n)``), so the
    intervals did not move when this became numpy."""
    k = len(values)
    draws = np.asarray(values, dtype=float)[np.floor(rng.random_sample((resamples, k)) * k).astype(np.intp)]
    return _row_medians(draws)


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """Each row's median, as ``statistics.median`` computes it (the middle, or the mean of the two middles)."""
    k = rows.shape[1]
    middle = [k // 2] if k % 2 else [k // 2 - 1, k // 2]
    rows = np.partition(rows, middle, axis=1)  # the middle ranks in place, the rest unordered: O(k) a row
    return rows[:, k // 2] if k % 2 else (rows[:, k // 2 - 1] + rows[:, k // 2]) / 2


def _rng(seed: int) -> np.random.RandomState:
    """Mersenne Twister seeded as ``random.Random(seed)`` is (init_by_array of the seed): the same stream."""
    return np.random.RandomState([seed])


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median of ``values`` (one pass of numpy)."""
    if len(values) < 2:
        v = statistics.median(values)
        return v, v
    estimates = resampled_medians(values, _rng(seed), resamples).tolist()
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
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``combine(median(a), median(b))``, each side resampled by its own
    units (generations, or the steps of a capture); ``combine`` is applied to the arrays of the resamples'
    medians. Each resample draws ``a``'s units, then ``b``'s, from one stream (as ``random.choices`` did)."""
    ka, kb = len(a), len(b)
    u = _rng(seed).random_sample((resamples, ka + kb))
    draws_a = np.asarray(a, dtype=float)[np.floor(u[:, :ka] * ka).astype(np.intp)]
    draws_b = np.asarray(b, dtype=float)[np.floor(u[:, ka:] * kb).astype(np.intp)]
    estimates = np.asarray(combine(_row_medians(draws_a), _row_medians(draws_b)), dtype=float).tolist()
    return percentile(estimates, 2.5), percentile(estimates, 97.5)
