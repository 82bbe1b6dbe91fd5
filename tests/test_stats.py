"""Summary statistics against numpy and known distributions."""

import random
import statistics

import numpy as np
import pytest

from llmprof.analysis.stats import bootstrap_ci, percentile, summarize, two_sample_ci


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


def _reference_ci(values, resamples, seed, confidence=0.95):
    """The bootstrap as it was in pure Python (random.choices per resample): the numpy one must equal it."""
    rng = random.Random(seed)
    estimates = [statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)]
    alpha = (1.0 - confidence) / 2.0  # 0.025000000000000022: the percentiles the old code asked for
    return percentile(estimates, 100 * alpha), percentile(estimates, 100 * (1 - alpha))


def _reference_two_sample(a, b, resamples, seed):
    rng = random.Random(seed)
    estimates = []
    for _ in range(resamples):
        ma = statistics.median(rng.choices(a, k=len(a)))
        estimates.append(statistics.median(rng.choices(b, k=len(b))) - ma)
    return percentile(estimates, 2.5), percentile(estimates, 97.5)


@pytest.mark.parametrize("n", [2, 3, 8, 31, 200])
def test_the_numpy_bootstrap_draws_exactly_what_random_choices_drew(n):
    """Seed-stable across the move to numpy: the same intervals, to the last bit, as the pure-Python loop."""
    rng = random.Random(n)
    a = [rng.lognormvariate(0, 0.5) for _ in range(n)]
    b = [rng.lognormvariate(0.2, 0.5) for _ in range(n // 2 + 1)]
    ties = [float(rng.randrange(3)) for _ in range(n)]  # ranks of equal values: still the same medians
    for seed in (0, 5):
        assert bootstrap_ci(ties, resamples=300, seed=seed) == _reference_ci(ties, 300, seed)
        assert bootstrap_ci(a, resamples=300, seed=seed) == _reference_ci(a, 300, seed)
        assert two_sample_ci(a, b, lambda ma, mb: mb - ma, 300, seed) == _reference_two_sample(
            a, b, 300, seed
        )
