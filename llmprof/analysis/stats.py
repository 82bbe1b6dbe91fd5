"""Repeats -> summary statistics with a bootstrap confidence interval. numpy, no torch.

The unit of resampling is the generation (one value per request): steps inside one generation are
correlated, so resampling steps would understate the spread.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=4)
def _draw_counts(sizes: tuple[int, ...], resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """For each sample of ``sizes`` (drawn in this order within each resample, from one stream of ``seed``):
    how many times each of its positions is drawn in each of ``resamples`` resamples with replacement, one
    row per resample. The draws are those of ``random.Random(seed)`` calling ``choices(sample, k=len(sample))``
    per resample and sample (``floor(random() * n)``); they depend only on the sizes, so every metric of the
    same size reads the same counts (cached: drawn once per render, not once per metric)."""
    u = _rng(seed).random_sample((resamples, sum(sizes)))
    out, start = [], 0
    for k in sizes:
        drawn = np.floor(u[:, start : start + k] * k).astype(np.intp)
        start += k
        drawn += np.arange(resamples)[:, None] * k  # one flat bin per (resample, position)
        counts = np.bincount(drawn.ravel(), minlength=resamples * k).reshape(resamples, k)
        counts = counts.astype(np.int32 if k > 32767 else np.int16)
        counts.setflags(write=False)  # shared by every caller through the cache
        out.append(counts)
    return tuple(out)


def _medians(values: Sequence[float], counts: np.ndarray) -> np.ndarray:
    """The median of each resample of ``values`` whose draws per position are the rows of ``counts``, as
    ``statistics.median`` computes it (the middle value, or the mean of the two middles): the resample's
    k-th smallest value is the first value, in sorted order, at which the running count of draws passes k."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    running = np.cumsum(counts[:, order], axis=1, dtype=counts.dtype)
    k = len(values)
    high = (running < k // 2 + 1).sum(axis=1)  # sorted rank of the value at 0-based rank k // 2
    ordered = values[order]
    if k % 2:
        return ordered[high]
    low = (running < k // 2).sum(axis=1)  # rank k // 2 - 1
    return (ordered[low] + ordered[high]) / 2


def _rng(seed: int) -> np.random.RandomState:
    """Mersenne Twister seeded as ``random.Random(seed)`` is (init_by_array of the seed): the same stream."""
    return np.random.RandomState([seed])


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median of ``values``."""
    if len(values) < 2:
        v = statistics.median(values)
        return v, v
    (counts,) = _draw_counts((len(values),), resamples, seed)
    estimates = _medians(values, counts).tolist()
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
    counts_a, counts_b = _draw_counts((len(a), len(b)), resamples, seed)
    estimates = np.asarray(combine(_medians(a, counts_a), _medians(b, counts_b)), dtype=float).tolist()
    return percentile(estimates, 2.5), percentile(estimates, 97.5)


# two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom (past 30: 1.96 + 2.4 / df, within 0.2%)
T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(df: float) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (a fractional df rounded down:
    the wider interval; under 1: 1)."""
    whole = max(int(df), 1)
    return T95[whole - 1] if whole <= len(T95) else 1.96 + 2.4 / whole


def welch_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a) (Welch's t: unequal variances), for few values a side, where a
    bootstrap's interval is far too narrow (3 a side: it spans the resampled differences only); NaN under 2
    values a side."""
    if min(len(a), len(b)) < 2:
        return math.nan, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    change = statistics.fmean(b) - statistics.fmean(a)
    if va + vb == 0:
        return change, change
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t95(df) * math.sqrt(va + vb)
    return change - half, change + half
