"""The run environment, captured once per run. Each probe fails alone: a missing key plus its reason."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any


def cpu_model() -> str:
    """The CPU's model name."""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    out = {}
    for package in ("llmprof", "torch", "transformers", "nvidia-ml-py"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _gpu() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "torch_cuda": torch.version.cuda}
    return {
        "available": True,
        "torch_cuda": torch.version.cuda,
        "names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def _nvml() -> dict[str, Any]:
    import pynvml

    pynvml.nvmlInit()
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append(
                {
                    "name": pynvml.nvmlDeviceGetName(handle),
                    "power_limit_w": pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
                    "persistence_mode": pynvml.nvmlDeviceGetPersistenceMode(handle),
                }
            )
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return {
            "driver_version": pynvml.nvmlSystemGetDriverVersion(),
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "gpus": gpus,
        }
    finally:
        pynvml.nvmlShutdown()


def _model(model: Any) -> dict[str, Any]:
    config = model.config
    return {
        "class": type(model).__name__,
        "name_or_path": getattr(config, "_name_or_path", None) or None,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "attn_implementation": getattr(config, "_attn_implementation", None),
    }


PROBES: dict[str, Callable[[], Any]] = {
    "python": lambda: sys.version.split()[0],
    "platform": platform.platform,
    "cpu": cpu_model,
    "versions": _versions,
    "gpu": _gpu,
    "nvml": _nvml,
}


def _guarded(probe: Callable[[], Any]) -> Any:
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - each probe must fail alone
        return {"error": f"{type(exc).__name__}: {exc}"}


def capture_environment(model: Any = None) -> dict[str, Any]:
    """Run every probe (and describe ``model``); a failing probe leaves ``{"error": reason}`` in its place."""
    env = {key: _guarded(probe) for key, probe in PROBES.items()}
    if model is not None:
        env["model"] = _guarded(lambda: _model(model))
    return env
