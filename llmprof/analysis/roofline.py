"""How far a run is from what the hardware allows: the roofline floor of TTFT and TPOT, MBU and MFU.
Pure Python, no torch: ``report`` renders it from the run JSON alone.

A decode step reads every weight once (an embedding table only through the rows it looks up) plus, for each of
the B sequences, the KV cache of its context; it does 2 FLOPs per matmul weight per token plus the attention
over the context. Its floor is the larger of bytes / peak bandwidth and FLOPs / peak rate. MBU and MFU are the
bytes moved and FLOPs done over the measured time, as shares of the peak figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llmprof.analysis.metrics import RequestMetrics

MEMORY_BOUND_MBU = 0.6  # a decode at this share of peak bandwidth or more is bandwidth-bound
ABOVE_PEAK = 1.01  # MBU or MFU past this cannot be (1% for the clock's resolution on one short step)
HOST_BOUND_SHARE = 0.5  # a GPU that waited on the host in this share of decode steps or more is host-bound


@dataclass(frozen=True)
class ModelShape:
    """What one forward of a model reads and computes (see :func:`llmprof.capture.model_shape.model_shape`).

    ``weight_bytes``: parameters and buffers on the decode path (output head included, vision tower not) at
    their storage size, less the embedding tables that are only looked up; ``embedding_bytes_per_token``: the
    rows those tables give one token. ``matmul_params``: weights that multiply every token (output head
    included). KV cache and attention grow with the positions each layer attends to: all of the context, or at
    most ``sliding_window`` tokens in ``sliding_layers`` of the ``layers``.
    """

    parameters: int
    weight_bytes: int
    embedding_bytes_per_token: int
    matmul_params: int
    lm_head_params: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    cache_dtype: str
    cache_dtype_bytes: int
    sliding_window: int | None = None
    sliding_layers: int = 0
    kv_width: int | None = None  # cached values per position and layer; None: K and V of every KV head
    expert_bytes: int = 0  # the routed experts' share of weight_bytes (mixture of experts)
    expert_params: int = 0  # ... and of matmul_params
    experts: int = 0
    experts_per_token: int = 0

    def _touched(self, tokens: int) -> float:
        """Expected share of the routed experts that ``tokens`` tokens reach (uniform routing): 1 - (1 - k/E)^n."""
        return 1.0 - (1.0 - self.experts_per_token / self.experts) ** tokens if self.experts else 1.0

    def _weights_read(self, tokens: int) -> int:
        """Weight bytes a forward over ``tokens`` tokens reads: all dense weights, the experts its tokens reach."""
        return round(self.weight_bytes - self.expert_bytes + self.expert_bytes * self._touched(tokens))

    @property
    def _active_matmul_params(self) -> float:
        """Matmul weights one token multiplies: the dense ones and k of the E routed experts."""
        share = self.experts_per_token / self.experts if self.experts else 1.0
        return self.matmul_params - self.expert_params + self.expert_params * share

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token in every layer."""
        return self.layers * self._kv_bytes_per_position

    @property
    def _kv_bytes_per_position(self) -> int:
        width = self.kv_width if self.kv_width is not None else 2 * self.kv_heads * self.head_dim
        return width * self.cache_dtype_bytes

    @property
    def _attention_flops_per_position(self) -> int:
        return 4 * self.heads * self.head_dim  # QK^T and attention x V, per attended position and layer

    def attended(self, context: int) -> int:
        """Positions attended to by one token at ``context`` tokens, summed over the layers."""
        window = min(context, self.sliding_window) if self.sliding_window else context
        return (self.layers - self.sliding_layers) * context + self.sliding_layers * window

    def _attended_by_prompt(self, prompt: int) -> int:
        """``attended(i)`` summed over the prompt's causal positions i = 1..prompt."""
        full = prompt * (prompt + 1) // 2
        window = self.sliding_window
        sliding = (
            full
            if not window or prompt <= window
            else window * (window + 1) // 2 + (prompt - window) * window
        )
        return (self.layers - self.sliding_layers) * full + self.sliding_layers * sliding

    def decode_bytes(self, batch: int, context: int) -> int:
        """Bytes one decode step moves: the weights once, and per sequence its embedding rows and KV cache."""
        per_sequence = self.embedding_bytes_per_token + self._kv_bytes_per_position * self.attended(context)
        return self._weights_read(batch) + batch * per_sequence

    def decode_flops(self, batch: int, context: int) -> int:
        """FLOPs of one decode step of ``batch`` sequences at ``context`` tokens."""
        per_token = 2 * self._active_matmul_params + self._attention_flops_per_position * self.attended(
            context
        )
        return round(batch * per_token)

    def prefill_bytes(self, batch: int, prompt: int, cached: int = 0) -> int:
        """Bytes the prefill of ``prompt`` new tokens on top of ``cached`` ones moves: the weights once, the
        prompt's embedding rows, and the KV cache it reads and writes."""
        kv = self._kv_bytes_per_position * self.attended(cached + prompt)
        per_sequence = prompt * self.embedding_bytes_per_token + kv
        return self._weights_read(batch * prompt) + batch * per_sequence

    def prefill_flops(self, batch: int, prompt: int, cached: int = 0) -> int:
        """FLOPs of the prefill of ``prompt`` new tokens on top of ``cached`` ones: every matmul over the new
        tokens (the output head on the last only, as generate() asks) and their causal attention to everything
        before them, which grows with the square of the context."""
        matmul = 2 * (self._active_matmul_params - self.lm_head_params) * prompt + 2 * self.lm_head_params
        attended = self._attended_by_prompt(cached + prompt) - self._attended_by_prompt(cached)
        return round(batch * (matmul + self._attention_flops_per_position * attended))


@dataclass(frozen=True)
class Peaks:
    """The peak figures a run is measured against, each with its source: ``table: <card>``, ``measured`` or
    ``override``. ``flops`` is the dense rate of ``dtype``, the model's compute dtype."""

    device: str
    dtype: str
    bandwidth: float
    bandwidth_source: str
    flops: float
    flops_source: str


@dataclass(frozen=True)
class Roofline:
    """What the run file keeps under ``roofline``: the model's shape and the peak figures."""

    model: ModelShape
    peaks: Peaks

    def to_dict(self) -> dict[str, Any]:
        return {"model": asdict(self.model), "peaks": asdict(self.peaks)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Roofline:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError/ValueError on a malformed document."""
        peaks = Peaks(**data["peaks"])
        if not (0 < peaks.bandwidth < math.inf and 0 < peaks.flops < math.inf):
            raise ValueError(
                f"peaks must be positive and finite, got {peaks.bandwidth} B/s and {peaks.flops} FLOP/s"
            )
        return cls(ModelShape(**data["model"]), peaks)

    def step_floor(self, batch: int, context: int) -> float:
        """The shortest a decode step at ``context`` tokens can take: bytes / bandwidth or FLOPs / rate."""
        return max(
            self.model.decode_bytes(batch, context) / self.peaks.bandwidth,
            self.model.decode_flops(batch, context) / self.peaks.flops,
        )

    def analyze(self, m: RequestMetrics) -> RequestRoofline:
        """The floors, MBU and MFU of one request."""
        shape, peaks = self.model, self.peaks
        batch, prompt = m.batch_size, m.prompt_tokens
        # decode step k (k >= 2) attends to the prompt and the k - 1 tokens before its own
        contexts = [prompt + k - 1 for k in range(2, len(m.itl) + 2)]
        step_bytes = [shape.decode_bytes(batch, c) for c in contexts]
        step_flops = [shape.decode_flops(batch, c) for c in contexts]
        step_floor = [self.step_floor(batch, c) for c in contexts]
        per_sequence = [statistics.fmean(step_floor[: n - 1]) for n in m.output_tokens if n >= 2]
        forwards = [(b, f) for b, f in zip(step_bytes, m.breakdown.step_forward) if f]
        decode_time = sum(m.itl)
        prefill = m.breakdown.prefill
        new, cached = prompt - m.cached_tokens, m.cached_tokens  # the prefill's own tokens, and the cache's
        prefill_flops = shape.prefill_flops(batch, new, cached)
        return RequestRoofline(
            floor_tpot=statistics.fmean(per_sequence) if per_sequence else None,
            floor_ttft=max(
                prefill_flops / peaks.flops, shape.prefill_bytes(batch, new, cached) / peaks.bandwidth
            ),
            step_floor=step_floor,
            step_mbu=[b / (t * peaks.bandwidth) if t > 0 else None for b, t in zip(step_bytes, m.itl)],
            mbu=sum(step_bytes) / (decode_time * peaks.bandwidth) if decode_time > 0 else None,
            mbu_forward=(
                sum(b for b, _ in forwards) / (sum(f for _, f in forwards) * peaks.bandwidth)
                if forwards
                else None
            ),
            mfu_decode=sum(step_flops) / (decode_time * peaks.flops) if decode_time > 0 else None,
            mfu_prefill=prefill_flops / (prefill * peaks.flops) if prefill else None,
            compute_bound=(
                bool(contexts)
                and shape.decode_flops(batch, contexts[-1]) / peaks.flops
                > shape.decode_bytes(batch, contexts[-1]) / peaks.bandwidth
            ),
            host_bound_share=m.breakdown.host_bound_share,
            peaks=peaks,
        )


@dataclass
class RequestRoofline:
    """One request against the roofline. Floors in seconds; MBU and MFU as shares of the peaks (0..1 when the
    peaks are true peaks). Per-step lists follow ``RequestMetrics.itl`` (decode steps k >= 2); MBU uses the
    token-to-token time, ``mbu_forward`` the forward spans alone."""

    floor_tpot: float | None
    floor_ttft: float
    step_floor: list[float]
    step_mbu: list[float | None]
    mbu: float | None
    mbu_forward: float | None
    mfu_decode: float | None
    mfu_prefill: float | None
    compute_bound: bool  # the decode floor is set by FLOPs, not bytes (a large batch)
    host_bound_share: float | None
    peaks: Peaks | None = None  # what it was measured against


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def above_peak(analyses: Sequence[RequestRoofline]) -> str | None:
    """The sentence saying that a figure is physically impossible, MBU or MFU over 100% (of a request, its
    forwards or one decode step; past ABOVE_PEAK): the peak it is a share of must be too low. None when every
    one is within."""
    peaks = next((a.peaks for a in analyses if a.peaks is not None), None)
    said = []
    for name, field, unit, shares in (
        ("MBU", "bandwidth", "B/s", [v for a in analyses for v in (a.mbu, a.mbu_forward, *a.step_mbu)]),
        ("MFU", "flops", "FLOP/s", [v for a in analyses for v in (a.mfu_decode, a.mfu_prefill)]),
    ):
        top = max((v for v in shares if v is not None), default=0.0)
        if top > ABOVE_PEAK:
            what = "bandwidth" if field == "bandwidth" else "FLOP/s"
            if peaks is not None:
                what += f" ({si(getattr(peaks, field), unit)}, {getattr(peaks, field + '_source')})"
            said.append(f"{name} {top:.0%} is above the peak: the peak {what} must be too low")
    return "; ".join(said) or None


def verdict(analyses: Sequence[RequestRoofline]) -> str:
    """One sentence on what bounds the run's decode: memory bandwidth, compute, the host, or the kernels; none
    when a figure is above its peak (:func:`above_peak`), which then must be wrong."""
    impossible = above_peak(analyses)
    if impossible is not None:
        return f"bound: not judged. {impossible}; the roofline's floors and shares above are wrong with it"
    mbu = _median([a.mbu for a in analyses])
    if mbu is None:
        mfu = _median([a.mfu_prefill for a in analyses])
        at = f": the prefill ran at {mfu:.0%} of the peak FLOP/s" if mfu is not None else ""
        return f"bound: no decode step to judge{at}"
    forward = _median([a.mbu_forward for a in analyses])
    host = _median([a.host_bound_share for a in analyses])
    if host is not None and host >= HOST_BOUND_SHARE:
        return (
            f"bound: the host. The GPU waited on it in {host:.0%} of decode steps (decode at {mbu:.0%} of the peak"
            " bandwidth): a faster kernel cannot move TPOT until the per-step host work shrinks"
        )
    if sum(a.compute_bound for a in analyses) * 2 > len(analyses):
        mfu = _median([a.mfu_decode for a in analyses]) or 0.0
        return (
            f"bound: compute. At this batch a decode step does more FLOPs per byte than the device's ridge point;"
            f" decode runs at {mfu:.0%} of the peak FLOP/s"
        )
    if mbu >= MEMORY_BOUND_MBU:
        return (
            f"bound: memory bandwidth. Decode moves weights and KV cache at {mbu:.0%} of the peak bandwidth: only"
            " fewer bytes per token (quantized weights, a smaller KV cache, more sequences per weight read) will"
            " make it much faster"
        )
    if forward is not None and forward >= MEMORY_BOUND_MBU:
        return (
            f"bound: the host. The decode forwards move bytes at {forward:.0%} of the peak bandwidth but whole"
            f" steps at {mbu:.0%}: sampling and the gaps between forwards set TPOT"
        )
    if host is not None:
        return (
            f"bound: the kernels. The GPU rarely waited on the host ({host:.0%} of decode steps) yet decode moves"
            f" bytes at {mbu:.0%} of the peak bandwidth: launch overheads, small matmuls or attention set TPOT"
        )
    return (
        f"bound: neither bandwidth nor compute. Decode moves bytes at {mbu:.0%} of the peak bandwidth (the forwards"
        f" {forward or 0:.0%}); with no device queue to tell host from device, the overhead inside the forward"
        " (framework dispatch, small ops) is the likely bound"
    )


def si(value: float, unit: str) -> str:
    """``value`` with a decimal prefix, as datasheets write it: 15.01 GB, 3.35 TB/s, 989.4 TFLOP/s."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"
