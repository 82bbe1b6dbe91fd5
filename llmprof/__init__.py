"""llmprof: precise, low-overhead profiling of LLM and multimodal-LLM inference (TTFT, TPOT, latency, TPS).

``Profiler``, ``profile``, ``Recorder`` (a decode loop of one's own) and ``save_ranks`` (every rank of a torchrun
job in one run file) import torch on first use, so the analysis and the reporters work on a machine
without it. The layers are described in docs/architecture.md.
"""

from typing import Any

from llmprof.imports import drop_current_folder, run_as_main

if (
    run_as_main()
):  # `python -m llmprof`: before numpy, torch or transformers can be taken from the user's folder
    drop_current_folder()

from llmprof.analysis.metrics import Breakdown, RequestMetrics
from llmprof.analysis.record import Label, RawRequest
from llmprof.errors import LlmprofError
from llmprof.version import __version__

__all__ = [
    "Breakdown",
    "Label",
    "LlmprofError",
    "Profiler",
    "RawRequest",
    "Recorder",
    "RequestMetrics",
    "__version__",
    "profile",
    "save_ranks",
]


def __getattr__(name: str) -> Any:
    if name in ("Profiler", "profile"):
        from llmprof.capture import profiler

        return getattr(profiler, name)
    if name == "save_ranks":
        from llmprof.capture.ranks import save_ranks

        return save_ranks
    if name == "Recorder":
        from llmprof.capture.recorder import Recorder

        return Recorder
    raise AttributeError(f"module 'llmprof' has no attribute {name!r}")
