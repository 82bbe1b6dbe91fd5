"""Hand-built timelines whose answers are known exactly, shared by the metrics and reporter tests."""

from llmprof.analysis.record import Label, RawRequest
from llmprof.analysis.roofline import ModelShape, Peaks, Roofline
from llmprof.runfile import Run

MS = 1_000_000  # ns


def record(marks, tokens, prompt=10, backend="host", warmup=False, uncertainty=0):
    """A RawRequest from marks (label, step, host_ms[, device_ms])."""
    return RawRequest(
        label=[int(m[0]) for m in marks],
        step=[m[1] for m in marks],
        host_ns=[round(m[2] * MS) for m in marks],
        device_ns=[round(m[3] * MS) if len(m) > 3 and m[3] is not None else None for m in marks],
        tokens_per_sequence=tokens,
        prompt_tokens=prompt,
        backend=backend,
        warmup=warmup,
        sync_uncertainty_ns=uncertainty,
    )


def host_marks(steps, start=100.0, prep=2.0, prefill=40.0, decode=15.0, sample=1.0, gap=0.5, vision=None):
    """A host-backend timeline: prep, (vision,) prefill, sample, then per step gap + forward + sample, then 3 ms
    to the end of generate(); ``vision`` (ms) runs an encoder right before the prefill forward."""
    t = start
    marks = [(Label.REQUEST_START, 0, t)]
    t += prep
    if vision is not None:
        marks += [(Label.VISION_BEGIN, 0, t), (Label.VISION_END, 0, t + vision)]
        t += vision
    marks.append((Label.FORWARD_BEGIN, 0, t))
    t += prefill
    marks.append((Label.FORWARD_END, 0, t))
    t += sample
    marks.append((Label.TOKEN, 1, t))
    for k in range(2, steps + 1):
        t += gap
        marks.append((Label.FORWARD_BEGIN, k - 1, t))
        t += decode
        marks.append((Label.FORWARD_END, k - 1, t))
        t += sample
        marks.append((Label.TOKEN, k, t))
    return marks + [(Label.REQUEST_END, steps, t + 3.0)]


SYNTHETIC = ModelShape(
    parameters=25_000_000,
    weight_bytes=50_000_000,
    embedding_bytes_per_token=0,
    matmul_params=500_000_000,
    lm_head_params=0,
    layers=1,
    heads=1,
    kv_heads=1,
    head_dim=128,
    cache_dtype="float32",
    cache_dtype_bytes=4,
)
PEAKS = Peaks("test card", "float32", 10e9, "override", 1e12, "override")


def synthetic_run(decode_ms: float, kv: bool = True) -> Run:
    """Three requests of 6 tokens after 10 prompt tokens; each decode step takes exactly ``decode_ms``."""
    shape = SYNTHETIC if kv else ModelShape(**{**SYNTHETIC.__dict__, "kv_heads": 0})
    records = [
        record(host_marks(6, start=1000.0 * i, decode=decode_ms, sample=0.0, gap=0.0), [6]) for i in range(3)
    ]
    return Run(config={}, environment={}, records=records, roofline=Roofline(shape, PEAKS).to_dict())
