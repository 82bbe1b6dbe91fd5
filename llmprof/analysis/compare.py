"""Comparing runs: the ratio of medians of each metric with a bootstrap confidence interval, a verdict, and
the differences between the runs that are not the variable under test. Pure Python, no torch."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from llmprof.analysis.config_keys import SETUP, value
from llmprof.analysis.kernels import KernelDiff, kernel_diff
from llmprof.analysis.metrics import RequestMetrics
from llmprof.analysis.record import RawRequest
from llmprof.analysis.registry import BY_NAME, compared
from llmprof.analysis.stats import BOOTSTRAP_RESAMPLES, two_sample_ci

NO_DIFFERENCE = "no significant difference"
MIN_REPEATS = 4  # below this per side the bootstrap interval is too narrow to trust (false positives)
TOO_FEW = f"too few repeats (< {MIN_REPEATS})"
# parts that generate() has and a decode loop of one's own does not: its input preparation before the prefill
GENERATE_ONLY = ("host_prep",)
LOOP_VS_GENERATE = "not comparable: generate() against a loop"
# a request's throughput: of a generate() call's whole batch, of one of an engine's requests (a sequence each)
PER_REQUEST_THROUGHPUT = ("tps", "decode_tps", "prefill_tps")
BATCH_VS_REQUESTS = "not comparable: a generate() batch against an engine's requests"
# what must match between two runs for a comparison to isolate one variable: (where, key, label), the config's
# setup keys first
SETUP_KEYS = [("config", key.name, key.label) for key in SETUP] + [
    ("environment", ("gpu", "names"), "GPU"),
    ("environment", ("gpu", "torch_cuda"), "CUDA version"),
    ("environment", ("nvml", "driver_version"), "driver"),
    ("environment", ("versions", "torch"), "torch version"),
    ("environment", ("versions", "transformers"), "transformers version"),
]


class ComparedRun(Protocol):
    """What a comparison reads of a run (:class:`llmprof.runfile.Run` is one)."""

    config: dict[str, Any]
    environment: dict[str, Any]

    @property
    def measured(self) -> list[RawRequest]: ...

    def metrics(self) -> list[RequestMetrics]: ...


@dataclass(frozen=True)
class Comparison:
    """One metric of B against A: medians, ``ratio`` = median(B) / median(A), its 95% CI, and the verdict."""

    metric: str
    unit: str
    median_a: float
    median_b: float
    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    n_a: int
    n_b: int


def ratio_ci(
    a: Sequence[float], b: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(b) / median(a); each run is resampled by its generations."""
    return two_sample_ci(a, b, _ratio, resamples, seed)


def _ratio(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """mb / ma per resample, inf where median(a) is 0."""
    out = np.full(ma.shape, np.inf)
    np.divide(mb, ma, out=out, where=ma != 0)
    return out


def verdict(ratio: float, low: float, high: float, higher_is_better: bool) -> str:
    """The verdict on B: e.g. "1.12x faster", "1.05x slower", or "no significant difference" (CI contains 1)."""
    if low <= 1.0 <= high:
        return NO_DIFFERENCE
    better = ratio > 1.0 if higher_is_better else ratio < 1.0
    factor = ratio if ratio >= 1.0 else 1.0 / ratio
    return f"{factor:.2f}x {'faster' if better else 'slower'}"


def compare_values(
    metric: str, a: Sequence[float], b: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> Comparison | None:
    """B against A for one metric's per-request values; None when either side has no value or a zero median."""
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if not a or not b or statistics.median(a) == 0:
        return None
    median_a, median_b = statistics.median(a), statistics.median(b)
    ratio = median_b / median_a
    enough = min(len(a), len(b)) >= MIN_REPEATS
    low, high = ratio_ci(a, b, resamples, seed) if enough else (float("nan"), float("nan"))
    return Comparison(
        metric=metric,
        unit=BY_NAME[metric].unit if metric in BY_NAME else "",
        median_a=median_a,
        median_b=median_b,
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        verdict=verdict(ratio, low, high, metric in BY_NAME and BY_NAME[metric].higher_is_better)
        if enough
        else TOO_FEW,
        n_a=len(a),
        n_b=len(b),
    )


def compare_runs(a: ComparedRun, b: ComparedRun) -> list[Comparison]:
    """Every compared metric (:func:`llmprof.analysis.registry.compared`) that both runs have, B against A. When
    one side ran generate() and the other a loop of its own, a part only generate() has gets no verdict."""
    metrics_a, metrics_b = a.metrics(), b.metrics()
    one_loop = bool(value(a.config, "loop")) != bool(value(b.config, "loop"))
    one_engine = bool(value(a.config, "engine")) != bool(value(b.config, "engine"))
    few_calls = min(_calls(a), _calls(b)) < MIN_REPEATS  # an engine's requests of one call are no repeats
    out = []
    for metric in compared():
        get = metric.get
        comparison = compare_values(metric.name, [get(m) for m in metrics_a], [get(m) for m in metrics_b])
        if comparison is None:
            continue
        if few_calls and comparison.verdict != TOO_FEW:
            comparison = replace(_not_comparable(comparison, TOO_FEW), n_a=_calls(a), n_b=_calls(b))
        elif one_loop and metric.name in GENERATE_ONLY:
            comparison = _not_comparable(comparison, LOOP_VS_GENERATE)
        elif one_engine and metric.name in PER_REQUEST_THROUGHPUT:
            comparison = _not_comparable(comparison, BATCH_VS_REQUESTS)
        out.append(comparison)
    return out


def _calls(run: ComparedRun) -> int:
    """The measured calls of a run: its requests for generate() (one a call), the calls an engine made."""
    made = value(run.config, "repeats_made") if value(run.config, "engine") else None
    return len(run.measured) if made is None else made


def _not_comparable(comparison: Comparison, why: str) -> Comparison:
    nan = float("nan")
    return replace(comparison, ci_low=nan, ci_high=nan, verdict=why)


def _lookup(run: ComparedRun, where: str, key: str | tuple[str, ...]) -> Any:
    value: Any = getattr(run, where)
    for part in (key,) if isinstance(key, str) else key:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _mean_output_tokens(run: ComparedRun) -> float:
    return statistics.fmean(sum(r.tokens_per_sequence) for r in run.measured) if run.measured else 0.0


def setup_differences(a: ComparedRun, b: ComparedRun, variables: Sequence[str] = ()) -> list[str]:
    """What differs between the runs besides the variables under test (labels of SETUP_KEYS): each is a
    reason to doubt the verdict. Also flags runs that generated different numbers of tokens."""
    out = []
    for where, key, label in SETUP_KEYS:
        if label in variables:
            continue
        value_a, value_b = _lookup(a, where, key), _lookup(b, where, key)
        if value_a != value_b:
            out.append(f"{label} differs: {value_a!r} vs {value_b!r}")
    tokens_a, tokens_b = _mean_output_tokens(a), _mean_output_tokens(b)
    if tokens_a and abs(tokens_b - tokens_a) > 0.01 * tokens_a:
        out.append(
            f"output tokens per request differ: {tokens_a:.1f} vs {tokens_b:.1f} (EOS moved? see --ignore-eos)"
        )
    return out


def compare_kernels(a: ComparedRun, b: ComparedRun) -> KernelDiff | None:
    """The decode kernel diff of B against A when both runs captured kernels (``--kernels``), with the change
    of the median TPOT of their measured repeats; None otherwise."""
    capture_a, capture_b = getattr(a, "kernels", None), getattr(b, "kernels", None)
    if capture_a is None or capture_b is None:
        return None
    tpots = [[m.tpot for m in run.metrics() if m.tpot is not None] for run in (a, b)]
    change = statistics.median(tpots[1]) - statistics.median(tpots[0]) if all(tpots) else None
    return kernel_diff(capture_a, capture_b, "decode", None if change is None else change * 1e9)


@dataclass(frozen=True)
class Threshold:
    """``--fail-on METRIC:+N%``: B regressed when the CI of B / A lies wholly above 1 + N% (``+``) or below
    1 - N% (``-``); without a sign, on the metric's worse side."""

    metric: str
    limit: float  # the ratio the CI must pass: 1.02 for +2%, 0.98 for -2%

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """``tpot:+2%``, ``tps:-5%``, ``ttft:10%``; raises ValueError with a one-line reason."""
        name, sep, amount = text.partition(":")
        metric = BY_NAME.get(name.strip())
        if not sep or metric is None or metric.better is None:
            known = ", ".join(m.name for m in compared())
            raise ValueError(f"--fail-on {text!r}: METRIC:+N% with METRIC one of {known}")
        amount = amount.strip()
        sign = amount[0] if amount[:1] in "+-" and amount else ("-" if metric.higher_is_better else "+")
        try:
            percent = float(amount.lstrip("+-").removesuffix("%"))
        except ValueError:
            raise ValueError(f"--fail-on {text!r}: the threshold is a percentage, e.g. +2%") from None
        if not amount.endswith("%") or not 0 <= percent < 100:
            raise ValueError(f"--fail-on {text!r}: the threshold is a percentage from 0 to 100, e.g. +2%")
        return cls(metric.name, 1 + percent / 100 if sign == "+" else 1 - percent / 100)

    def describe(self) -> str:
        return f"{self.metric} {'+' if self.limit >= 1 else '-'}{abs(self.limit - 1):.1%}"

    def exceeded(self, c: Comparison) -> bool:
        """Whether ``c`` (of this metric) is past the limit with confidence (a CI that lies wholly past it)."""
        if c.metric != self.metric or math.isnan(c.ci_low):
            return False
        return c.ci_low > self.limit if self.limit >= 1 else c.ci_high < self.limit


@dataclass
class Gate:
    """What ``--fail-on`` found: one line per threshold passed (``regressions``) and one per threshold it could
    not judge (``unjudged``: too few repeats, the metric or the point missing on one side)."""

    regressions: list[str] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)

    def __add__(self, other: Gate) -> Gate:
        return Gate(self.regressions + other.regressions, self.unjudged + other.unjudged)


def regressions(
    comparisons: Sequence[Comparison], thresholds: Sequence[Threshold], where: str = "", missing: str = ""
) -> Gate:
    """Each threshold against ``comparisons`` (of B at ``where``: a file, a point): passed, e.g. "tpot +2.0%:
    B / A 1.103 (CI 1.081-1.125)", or not judged, e.g. "--fail-on tpot +2.0%: cannot judge b.json: too few
    repeats (3 < 4)"; ``missing`` says why there is no comparison at all (a point not measured on one side)."""
    gate = Gate()
    prefix = f"{where}: " if where else ""
    for t in thresholds:
        c = next((c for c in comparisons if c.metric == t.metric), None)
        if c is not None and t.exceeded(c):
            gate.regressions.append(
                f"{prefix}{t.describe()}: B / A {c.ratio:.3f} (CI {c.ci_low:.3f}-{c.ci_high:.3f})"
            )
        elif c is None or math.isnan(c.ci_low):
            why = (missing or f"{t.metric} is not measured on both sides") if c is None else _no_ci(c)
            at = f" {where}" if where else ""
            gate.unjudged.append(f"--fail-on {t.describe()}: cannot judge{at}: {why}")
    return gate


def _no_ci(c: Comparison) -> str:
    """Why a comparison has no CI: too few repeats (with how many), or its verdict's reason."""
    if c.verdict == TOO_FEW:
        return f"too few repeats ({min(c.n_a, c.n_b)} < {MIN_REPEATS})"
    return c.verdict
