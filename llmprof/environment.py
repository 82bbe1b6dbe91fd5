"""The run environment, captured once per run. Each probe fails alone: a missing key plus its reason."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
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


PROBES: dict[str, Callable[[], Any]] = {
    "python": lambda: sys.version.split()[0],
    "platform": platform.platform,
    "cpu": _cpu_model,
    "versions": _versions,
    "gpu": _gpu,
}


def capture_environment() -> dict[str, Any]:
    """Run every probe; a failing probe leaves ``{"error": reason}`` in its place."""
    env: dict[str, Any] = {}
    for key, probe in PROBES.items():
        try:
            env[key] = probe()
        except Exception as exc:  # noqa: BLE001 - each probe must fail alone
            env[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return env
