"""Raw request timeline -> the four metrics and their breakdown (docs/architecture.md, "Metrics"). numpy (the
decode steps as columns), no torch.

Every mark's time is its device time mapped onto the host clock where it has one, else its host stamp.
All results are in seconds.
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from llmprof.analysis.record import Label, RawRequest, at_steps

NS = 1e-9
HOST_BOUND_TOLERANCE_NS = (
    10_000  # an event executed within this (plus the sync uncertainty) of its record met an empty queue
)


@dataclass
class Breakdown:
    """Where the time of one request went.

    TTFT = host_prep + encoder + vision + first_draft + prefill + first_sample. Each decode step k >= 2 splits
    its inter-token interval into host_gap (previous token to the forward's start, its draft excluded), draft
    (assisted generation: drafting the candidates the forward verifies), forward and sampling (forward end to
    token). A part whose marks are missing (e.g. a forward that bypassed the hooks) is None.
    """

    host_prep: float | None
    vision: float
    prefill: float | None
    first_sample: float | None
    step_forward: list[float | None]
    step_sampling: list[float | None]
    step_host_gap: list[float | None]
    step_host_bound: list[bool] | None  # None on the host backend, where there is no device queue
    encoder: float = 0.0  # the encoder of an encoder-decoder model (0 for a decoder-only one)
    first_draft: float = 0.0  # assisted generation: the draft verified by the first forward (0 without one)
    step_draft: list[float | None] = field(default_factory=list)  # ... and per decode step (empty without)

    @property
    def draft(self) -> float | None:
        """Mean drafting time of a decode step (assisted generation; None without)."""
        return _mean(self.step_draft)

    @property
    def decode_forward(self) -> float | None:
        """Mean forward span of a decode step."""
        return _mean(self.step_forward)

    @property
    def sampling(self) -> float | None:
        """Mean sampling span of a decode step (forward end to token)."""
        return _mean(self.step_sampling)

    @property
    def host_gap(self) -> float | None:
        """Mean time between a token and the next forward's start."""
        return _mean(self.step_host_gap)

    @property
    def host_bound_share(self) -> float | None:
        """Share of decode steps whose forward found the device idle, waiting on the host."""
        if not self.step_host_bound:
            return None
        return sum(self.step_host_bound) / len(self.step_host_bound)


@dataclass
class RequestMetrics:
    """The metrics of one ``generate()`` call (seconds, tokens per second)."""

    ttft: float
    latency: float
    latency_to_last_token: float
    tpot: float | None
    tpot_per_sequence: list[float | None]
    itl: list[float]
    tps: float
    decode_tps: float | None
    prefill_tps: float
    output_tokens: list[int]
    prompt_tokens: int  # the context before the first new token, cached ones included
    breakdown: Breakdown
    cached_tokens: int = 0  # of prompt_tokens, those in the KV cache before the call (not prefilled)
    # assisted generation: tokens each decode step k >= 2 appended, and the share of drafted tokens accepted
    step_tokens: list[int] = field(default_factory=list)
    acceptance_rate: float | None = None
    # an engine's request (vLLM): its arrival to its first scheduling; None without a SCHEDULED mark
    queue: float | None = None

    @property
    def tokens_per_step(self) -> float | None:
        """Mean tokens a decode step appended (assisted generation; None without)."""
        return statistics.fmean(self.step_tokens) if self.step_tokens else None

    @property
    def batch_size(self) -> int:
        return len(self.output_tokens)

    @property
    def total_output_tokens(self) -> int:
        return sum(self.output_tokens)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _optional(values: np.ndarray, present: np.ndarray) -> list[float | None]:
    """``values`` as floats, None where not ``present``."""
    out = values.tolist()
    if not present.all():
        out = [v if p else None for v, p in zip(out, present.tolist())]
    return out


def _span(end: int | None, start: int | None) -> float | None:
    return None if end is None or start is None else (end - start) * NS


def _steps(raw: RawRequest) -> tuple[list[int], list[int]]:
    """(the tokens each step appended, the tokens that exist after each step). Raises ValueError for a request
    that generated nothing, or whose sequences hold more tokens than its steps appended."""
    n = raw.tokens_per_sequence
    per_step = raw.tokens_per_step or [1] * max(n, default=0)
    if not per_step or max(n, default=0) < 1:
        raise ValueError("the request generated no token")
    reached = list(accumulate(per_step))
    if min(per_step) < 1 or max(n) > reached[-1]:
        raise ValueError(f"{max(n)} tokens cannot come from steps of {per_step[:5]}... tokens")
    return per_step, reached


@dataclass
class _Timeline:
    """A request's marks as per-step columns (ns): ``tokens`` holds T_k (k = 1..steps) at k - 1; ``launch`` and
    ``done`` the first forward launch and the last forward return (chunked prefill has several) of each step
    0..steps-1 (the forward producing token k ran at step k-1), valid where ``has_begin`` / ``has_end``;
    ``begin_at`` the launch marks' positions in the timeline."""

    tokens: np.ndarray
    launch: np.ndarray
    done: np.ndarray
    has_begin: np.ndarray
    has_end: np.ndarray
    begin_at: np.ndarray


def _timeline(raw: RawRequest, steps: int) -> _Timeline:
    """The per-step columns of ``raw``. Raises ValueError when the request or a token mark is missing."""
    marks = raw.marks
    if not len(marks.first_positions(Label.REQUEST_START)[0]) or not len(
        marks.last_positions(Label.REQUEST_END)[0]
    ):
        raise ValueError("the timeline lacks the request start or end mark")
    arrays = np.asarray(raw.times, dtype=np.int64)
    has_token, token_at = at_steps(*marks.first_positions(Label.TOKEN), np.arange(1, steps + 1))
    has_begin, begin_at = at_steps(*marks.first_positions(Label.FORWARD_BEGIN), np.arange(steps))
    has_end, end_at = at_steps(*marks.last_positions(Label.FORWARD_END), np.arange(steps))
    if not has_token.all():
        missing = (np.flatnonzero(~has_token) + 1).tolist()
        raise ValueError(f"the timeline lacks the token marks of steps {missing[:5]}")
    return _Timeline(arrays[token_at], arrays[begin_at], arrays[end_at], has_begin, has_end, begin_at)


def compute_request(raw: RawRequest) -> RequestMetrics:
    """Compute the metrics of one recorded request (docs/architecture.md, "Metrics"). Raises ValueError if the
    timeline lacks a needed mark."""
    n = raw.tokens_per_sequence
    per_step, reached = _steps(raw)
    timeline = _timeline(raw, len(per_step))
    start, end = raw.window
    token = timeline.tokens.tolist()  # T_k at token[k - 1]
    t_first, t_last = token[0], token[-1]
    ttft = (t_first - start) * NS
    latency = (end - start) * NS
    tpot_seq = _tpot_per_sequence(n, reached, token)
    decode_tokens = sum(k - 1 for k in n if k >= 1)
    decode_s = (t_last - t_first) * NS
    prompt = raw.prefill_tokens if raw.prefill_tokens is not None else len(n) * raw.prompt_tokens
    return RequestMetrics(
        ttft=ttft,
        latency=latency,
        latency_to_last_token=(t_last - start) * NS,
        tpot=_mean(tpot_seq),
        tpot_per_sequence=tpot_seq,
        itl=(np.diff(timeline.tokens) * NS).tolist(),
        tps=sum(n) / latency,
        decode_tps=decode_tokens / decode_s if len(per_step) >= 2 and t_last > t_first else None,
        prefill_tps=prompt / ttft,
        output_tokens=list(n),
        prompt_tokens=raw.prompt_tokens,
        cached_tokens=raw.cached_tokens,
        breakdown=_breakdown(raw, timeline, ttft),
        step_tokens=per_step[1:] if raw.tokens_per_step else [],
        acceptance_rate=_acceptance(per_step, raw.drafted_per_step),
        queue=_queue(raw, start),
    )


def _queue(raw: RawRequest, start: int) -> float | None:
    """Seconds from the request's start (its arrival at an engine) to its first SCHEDULED mark; None without."""
    _, scheduled = raw.marks.first_positions(Label.SCHEDULED)
    return (raw.times[int(scheduled[0])] - start) * NS if len(scheduled) else None


def _tpot_per_sequence(n: list[int], reached: list[int], token: list[int]) -> list[float | None]:
    """Each sequence's TPOT, ``(T_last(i) - T_1) / (n_i - 1)`` (None where n_i < 2): its last token came at the
    step whose tokens ``reached`` its n_i (step n_i when each step appends one)."""
    last = [bisect.bisect_left(reached, k) + 1 for k in n]
    return [(token[s - 1] - token[0]) * NS / (k - 1) if k >= 2 else None for k, s in zip(n, last)]


def _span_total(raw: RawRequest, begin: Label, end: Label) -> float:
    """Seconds inside the spans ``begin`` opens and ``end`` closes, over all steps."""
    return sum(((raw.times[e] - raw.times[b]) * NS for _, b, e in raw.marks.pairs(begin, end)), 0.0)


def _drafts(raw: RawRequest) -> dict[int, float]:
    """Per step, the seconds spent drafting the candidates its forward verifies (assisted generation)."""
    drafts: dict[int, float] = {}
    for step, b, e in raw.marks.pairs(Label.DRAFT_BEGIN, Label.DRAFT_END):
        drafts[step] = drafts.get(step, 0.0) + (raw.times[e] - raw.times[b]) * NS
    return drafts


def _prefill(raw: RawRequest, timeline: _Timeline, vision: float) -> tuple[float | None, float | None]:
    """(the prefill forward's span, less the vision encoder when that ran inside it; the first sample: that
    forward's end to T_1). None where a mark is missing."""
    launch = int(timeline.launch[0]) if timeline.has_begin[0] else None
    done = int(timeline.done[0]) if timeline.has_end[0] else None
    prefill = _span(done, launch)
    if prefill is not None and _vision_inside_prefill(raw):
        prefill = max(prefill - vision, 0.0)
    return prefill, _span(int(timeline.tokens[0]), done)


def _host_bound(raw: RawRequest, launches: list[int]) -> list[bool] | None:
    """Per decode forward launched at the positions ``launches`` that has a device time: whether its start event
    ran within the sync uncertainty of its host stamp (it met an empty queue). None on the host backend."""
    if raw.backend == "host":
        return None
    uncertainty = raw.sync_uncertainty_ns + HOST_BOUND_TOLERANCE_NS
    return [
        raw.device_ns[i] - raw.host_ns[i] <= uncertainty for i in launches if raw.device_ns[i] is not None
    ]


def _breakdown(raw: RawRequest, timeline: _Timeline, ttft: float) -> Breakdown:
    """Where the request's time went: TTFT's parts, then each decode step k >= 2's (its forward is step k-1)."""
    vision = _span_total(raw, Label.VISION_BEGIN, Label.VISION_END)
    encoder = _span_total(raw, Label.ENCODER_BEGIN, Label.ENCODER_END)
    drafts = _drafts(raw)
    prefill, first_sample = _prefill(raw, timeline, vision)
    known = encoder + vision + drafts.get(0, 0.0) + (prefill or 0.0) + (first_sample or 0.0)

    steps = len(timeline.tokens)
    # decode steps k >= 2: their forwards are steps 1..steps-1
    has_begin, has_end = timeline.has_begin[1:], timeline.has_end[1:]
    launch, done = timeline.launch[1:], timeline.done[1:]
    step_draft = np.array([drafts.get(step, 0.0) for step in range(1, steps)]) if drafts else 0.0
    return Breakdown(
        host_prep=ttft - known if prefill is not None else None,
        vision=vision,
        encoder=encoder,
        prefill=prefill,
        first_sample=first_sample,
        step_forward=_optional((done - launch) * NS, has_begin & has_end),
        step_sampling=_optional((timeline.tokens[1:] - done) * NS, has_end),
        step_host_gap=_optional((launch - timeline.tokens[:-1]) * NS - step_draft, has_begin),
        step_host_bound=_host_bound(raw, timeline.begin_at[1:][has_begin].tolist()),
        first_draft=drafts.get(0, 0.0),
        step_draft=[drafts.get(k - 1) for k in range(2, steps + 1)] if drafts else [],
    )


def _acceptance(per_step: list[int], drafted: list[int] | None) -> float | None:
    """Share of the drafted tokens the model accepted: each step appends its accepted drafts plus one."""
    if not drafted or not sum(drafted):
        return None
    return sum(tokens - 1 for tokens in per_step) / sum(drafted)


def _vision_inside_prefill(raw: RawRequest) -> bool:
    """Whether the vision encoder ran inside the prefill forward (4.x) rather than before it (5.x pre-encoding)."""
    marks = raw.marks
    vision = marks.first(Label.VISION_BEGIN).get(0)
    if vision is None:
        return False
    begin = marks.first(Label.FORWARD_BEGIN).get(0)
    end = marks.last(Label.FORWARD_END).get(0)
    return None not in (begin, end) and begin < vision < end
