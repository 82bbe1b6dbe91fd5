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


def compute_request(raw: RawRequest) -> RequestMetrics:
    """Compute the metrics of one recorded request. Raises ValueError if the timeline lacks a needed mark."""
    n = raw.tokens_per_sequence
    per_step = raw.tokens_per_step or [1] * max(n, default=0)  # tokens each step appended
    steps = len(per_step)
    if steps < 1 or max(n, default=0) < 1:
        raise ValueError("the request generated no token")
    reached = list(accumulate(per_step))  # tokens that exist after each step
    if min(per_step) < 1 or max(n) > reached[-1]:
        raise ValueError(f"{max(n)} tokens cannot come from steps of {per_step[:5]}... tokens")
    marks, times = raw.marks, raw.times
    if not len(marks.first_positions(Label.REQUEST_START)[0]) or not len(
        marks.last_positions(Label.REQUEST_END)[0]
    ):
        raise ValueError("the timeline lacks the request start or end mark")
    start, end = raw.window
    # per step as columns: T_k (k = 1..steps), and the first forward launch and the last forward return
    # (chunked prefill has several) of each step 0..steps-1 (the forward producing token k ran at step k-1)
    arrays = np.asarray(times, dtype=np.int64)
    has_token, token_at = at_steps(*marks.first_positions(Label.TOKEN), np.arange(1, steps + 1))
    has_begin, begin_at = at_steps(*marks.first_positions(Label.FORWARD_BEGIN), np.arange(steps))
    has_end, end_at = at_steps(*marks.last_positions(Label.FORWARD_END), np.arange(steps))
    vision_time, encoder_time = (
        sum(((times[e] - times[b]) * NS for _, b, e in marks.pairs(begin, end)), 0.0)
        for begin, end in ((Label.VISION_BEGIN, Label.VISION_END), (Label.ENCODER_BEGIN, Label.ENCODER_END))
    )
    if not has_token.all():
        missing = (np.flatnonzero(~has_token) + 1).tolist()
        raise ValueError(f"the timeline lacks the token marks of steps {missing[:5]}")
    tokens, launch, done = arrays[token_at], arrays[begin_at], arrays[end_at]
    token = tokens.tolist()  # T_k at token[k - 1]

    t_first, t_last = token[0], token[-1]
    ttft = (t_first - start) * NS
    latency = (end - start) * NS
    # the step at which a sequence's last token came (its count of tokens, when a step appends one)
    last = [bisect.bisect_left(reached, k) + 1 for k in n]
    tpot_seq = [(token[s - 1] - t_first) * NS / (k - 1) if k >= 2 else None for k, s in zip(n, last)]
    itl = (np.diff(tokens) * NS).tolist()
    decode_tokens = sum(k - 1 for k in n if k >= 1)

    launch_0 = int(launch[0]) if has_begin[0] else None
    done_0 = int(done[0]) if has_end[0] else None
    prefill = _span(done_0, launch_0)
    if prefill is not None:
        prefill = max(prefill - vision_time, 0.0) if _vision_inside_prefill(raw) else prefill
    first_sample = _span(t_first, done_0)
    drafts: dict[int, float] = {}  # per step, the time drafting its forward's candidates
    for step, b, e in marks.pairs(Label.DRAFT_BEGIN, Label.DRAFT_END):
        drafts[step] = drafts.get(step, 0.0) + (times[e] - times[b]) * NS
    known = encoder_time + vision_time + drafts.get(0, 0.0) + (prefill or 0.0) + (first_sample or 0.0)
    host_prep = ttft - known if prefill is not None else None

    # decode steps k >= 2: their forwards are steps 1..steps-1
    has_begin, begin_at, launch = has_begin[1:], begin_at[1:], launch[1:]
    has_end, done = has_end[1:], done[1:]
    step_forward = _optional((done - launch) * NS, has_begin & has_end)
    step_sampling = _optional((tokens[1:] - done) * NS, has_end)
    step_draft = np.array([drafts.get(step, 0.0) for step in range(1, steps)]) if drafts else 0.0
    step_gap = _optional((launch - tokens[:-1]) * NS - step_draft, has_begin)
    on_device = raw.backend != "host"
    step_bound = []
    if on_device:
        uncertainty = raw.sync_uncertainty_ns + HOST_BOUND_TOLERANCE_NS
        for i in begin_at[has_begin].tolist():
            device = raw.device_ns[i]
            if device is not None:
                step_bound.append(device - raw.host_ns[i] <= uncertainty)

    return RequestMetrics(
        ttft=ttft,
        latency=latency,
        latency_to_last_token=(t_last - start) * NS,
        tpot=_mean(tpot_seq),
        tpot_per_sequence=tpot_seq,
        itl=itl,
        tps=sum(n) / latency,
        decode_tps=decode_tokens / ((t_last - t_first) * NS) if steps >= 2 and t_last > t_first else None,
        prefill_tps=(raw.prefill_tokens if raw.prefill_tokens is not None else len(n) * raw.prompt_tokens)
        / ttft,
        output_tokens=list(n),
        prompt_tokens=raw.prompt_tokens,
        cached_tokens=raw.cached_tokens,
        breakdown=Breakdown(
            host_prep=host_prep,
            vision=vision_time,
            encoder=encoder_time,
            prefill=prefill,
            first_sample=first_sample,
            step_forward=step_forward,
            step_sampling=step_sampling,
            step_host_gap=step_gap,
            step_host_bound=step_bound if on_device else None,
            first_draft=drafts.get(0, 0.0),
            step_draft=[drafts.get(k - 1) for k in range(2, steps + 1)] if drafts else [],
        ),
        step_tokens=per_step[1:] if raw.tokens_per_step else [],
        acceptance_rate=_acceptance(per_step, raw.drafted_per_step),
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
