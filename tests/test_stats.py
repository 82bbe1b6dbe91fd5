"""Summary statistics against numpy and known distributions."""

import random
import statistics

import numpy as np
import pytest

from llmprof.analysis.stats import bootstrap_ci, percentile, summarize


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy(q):
    values = [random.Random(i).expovariate(1.0) for i in range(37)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_summary_fields():
    s = summarize([3.0, 1.0, 2.0, 4.0, None])
    assert (s.n, s.median, s.mean, s.min, s.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.stdev == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert s.ci95_low <= s.median <= s.ci95_high
    assert summarize([None]) is None
    one = summarize([5.0])
    assert (one.stdev, one.ci95_low, one.ci95_high) == (0.0, 5.0, 5.0)


def test_bootstrap_ci_of_median_covers_the_true_median():
    # Normal samples of 30: the 95% CI of the median should contain the true median (0) about 95% of the time.
    rng = random.Random(7)
    trials, hits = 200, 0
    for t in range(trials):
        sample = [rng.gauss(0.0, 1.0) for _ in range(30)]
        low, high = bootstrap_ci(sample, resamples=400, seed=t)
        hits += low <= 0.0 <= high
    assert 0.88 <= hits / trials <= 0.995
