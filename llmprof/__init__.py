"""llmprof: precise, low-overhead profiling of LLM and multimodal-LLM inference (TTFT, TPOT, latency, TPS).

``Profiler`` and ``profile`` import torch on first use, so the reporters work on a machine without it.
"""

from typing import Any

from llmprof.metrics import Breakdown, RequestMetrics
from llmprof.record import Label, RawRequest

__version__ = "0.1.0"
__all__ = ["Breakdown", "Label", "Profiler", "RawRequest", "RequestMetrics", "__version__", "profile"]


def __getattr__(name: str) -> Any:
    if name in ("Profiler", "profile"):
        from llmprof import profiler

        return getattr(profiler, name)
    raise AttributeError(f"module 'llmprof' has no attribute {name!r}")
