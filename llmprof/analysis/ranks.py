"""Several ranks of one job (torchrun, tensor parallel): every rank's timeline of the same requests, put on
rank 0's clock, and what they say together: the per-step skew of the token times (max - min across ranks) and
of the forward ends, the slowest rank per step and overall, each rank's TTFT and TPOT. Pure Python, no torch.

A rank's ``offset_ns`` is added to its host stamps to put them on rank 0's host clock; ``uncertainty_ns``
bounds the error of that offset (0 for ranks on rank 0's host: one CLOCK_MONOTONIC per machine). See
docs/architecture.md, "Ranks"."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.record import Label, RawRequest


@dataclass
class RankTimeline:
    """One rank's records of the run's requests (warm-ups included, in call order), its host, and how its
    host clock maps onto rank 0's."""

    rank: int
    hostname: str
    offset_ns: int = 0
    uncertainty_ns: int = 0
    records: list[RawRequest] = field(default_factory=list)

    @property
    def measured(self) -> list[RawRequest]:
        """The records that count (not warm-ups)."""
        return [r for r in self.records if not r.warmup]


@dataclass
class StepSkew:
    """Step ``step`` (its token T_step) of measured request ``request`` across the ranks: the spread of the
    token times and of the ends of the forward that made it (ns, on rank 0's clock), and the rank whose token
    came last."""

    request: int
    step: int
    token_skew_ns: int
    forward_end_skew_ns: int | None
    slowest: int


@dataclass
class RankSummary:
    """One rank over the measured requests: its medians (its own telemetry counters included), the tokens it
    counted, and in how many steps it was the slowest."""

    rank: int
    hostname: str
    ttft: float
    tpot: float | None
    output_tokens: list[int]
    slowest_steps: int
    offset_ns: int
    uncertainty_ns: int
    energy_j: float | None = None  # per request, from the rank's own counters (its GPU's energy)
    cpu_percent: float | None = None  # per request (the process sampler: 100% = one core)


@dataclass
class RanksReport:
    """What the ranks say together."""

    ranks: list[RankSummary]
    skews: list[StepSkew]
    clock_uncertainty_ns: int  # the largest offset uncertainty: the skews are known to within twice this
    warnings: list[str]

    @property
    def slowest_rank(self) -> int | None:
        """The rank that was the slowest in most steps (None without steps)."""
        if not self.skews:
            return None
        return max(self.ranks, key=lambda r: r.slowest_steps).rank

    def token_skews_s(self) -> list[float]:
        """Every step's token-time skew, in seconds."""
        return [s.token_skew_ns / 1e9 for s in self.skews]


def _on_rank0_clock(raw: RawRequest, offset_ns: int, label: Label, last: bool = False) -> dict[int, int]:
    marks = raw.marks.last(label) if last else raw.marks.first(label)
    return {step: raw.times[i] + offset_ns for step, i in marks.items()}


def step_skews(timelines: list[RankTimeline]) -> list[StepSkew]:
    """The skew of every step of every measured request that all ranks recorded (the same requests in the
    same order on every rank: tensor-parallel ranks run the same calls)."""
    measured = [t.measured for t in timelines]
    out = []
    for i in range(min(len(m) for m in measured)):
        tokens = [_on_rank0_clock(m[i], t.offset_ns, Label.TOKEN) for m, t in zip(measured, timelines)]
        ends = [
            _on_rank0_clock(m[i], t.offset_ns, Label.FORWARD_END, last=True)
            for m, t in zip(measured, timelines)
        ]
        for step in sorted(set.intersection(*(set(t) for t in tokens))):
            times = [t[step] for t in tokens]
            forward = [e[step - 1] for e in ends if step - 1 in e]  # token k's forward is step k - 1's
            slowest = max(range(len(times)), key=times.__getitem__)
            out.append(
                StepSkew(
                    request=i,
                    step=step,
                    token_skew_ns=max(times) - min(times),
                    forward_end_skew_ns=max(forward) - min(forward) if len(forward) == len(ends) else None,
                    slowest=timelines[slowest].rank,
                )
            )
    return out


def _median_counter(records: list[RawRequest], name: str) -> float | None:
    """The median over ``records`` of one of their per-request telemetry counters (None when none has it)."""
    values = [r.telemetry[name] for r in records if r.telemetry.get(name) is not None]
    return statistics.median(values) if values else None


def ranks_report(timelines: list[RankTimeline]) -> RanksReport:
    """Per-rank medians, per-step skews and the warnings of a job's timelines (rank 0 first)."""
    skews = step_skews(timelines)
    slowest = Counter(s.slowest for s in skews)
    summaries, warnings = [], []
    for t in timelines:
        metrics: list[RequestMetrics] = [compute_request(r) for r in t.measured]
        tpots = [m.tpot for m in metrics if m.tpot is not None]
        summaries.append(
            RankSummary(
                rank=t.rank,
                hostname=t.hostname,
                ttft=statistics.median(m.ttft for m in metrics) if metrics else float("nan"),
                tpot=statistics.median(tpots) if tpots else None,
                output_tokens=[sum(m.output_tokens) for m in metrics],
                slowest_steps=slowest.get(t.rank, 0),
                offset_ns=t.offset_ns,
                uncertainty_ns=t.uncertainty_ns,
                energy_j=_median_counter(t.measured, "energy_j"),
                cpu_percent=_median_counter(t.measured, "cpu_percent"),
            )
        )
    counts = {tuple(s.output_tokens) for s in summaries}
    if len(counts) > 1:
        warnings.append(
            "the ranks counted different tokens per request: "
            + "; ".join(f"rank {s.rank}: {s.output_tokens}" for s in summaries)
        )
    lengths = {len(t.measured) for t in timelines}
    if len(lengths) > 1:
        warnings.append(
            "the ranks recorded different numbers of requests: "
            + ", ".join(f"rank {t.rank}: {len(t.measured)}" for t in timelines)
            + " (skews over the requests all of them recorded)"
        )
    uncertainty = max((t.uncertainty_ns for t in timelines), default=0)
    return RanksReport(summaries, skews, uncertainty, warnings)
