"""GPUs' datasheet figures (memory bandwidth, dense FLOP/s per dtype), by the names torch and NVML report.
Pure Python: the roofline of a known GPU needs no measurement."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    """A GPU's datasheet figures: memory bandwidth (bytes/s) and dense FLOP/s per dtype."""

    name: str
    bandwidth: float
    flops: dict[str, float]


def _card(
    name: str, bandwidth_gb_s: float, bf16_tflops: float | None, fp16_tflops: float, fp32_tflops: float
) -> Card:
    flops = {"float16": fp16_tflops * 1e12, "float32": fp32_tflops * 1e12}
    if bf16_tflops is not None:
        flops["bfloat16"] = bf16_tflops * 1e12
    return Card(name, bandwidth_gb_s * 1e9, flops)


# (pattern of the name torch/NVML report, card); the first match wins. Vendor datasheets, dense tensor-core
# rates (half the "with sparsity" figures), FP32 without tensor cores (torch's default for float32 matmuls);
# GeForce cards at their FP32-accumulate rate. The A10G has no NVIDIA datasheet: AWS's figures.
CARDS: list[tuple[str, Card]] = [
    (r"\bH100\b.*\bPCIe\b", _card("H100 PCIe", 2000, 756.5, 756.5, 51)),
    (r"\bH100\b.*\bNVL\b", _card("H100 NVL", 3900, 835.5, 835.5, 60)),
    (r"\bH100\b", _card("H100 SXM", 3350, 989.4, 989.4, 67)),
    (r"\bH200\b.*\bNVL\b", _card("H200 NVL", 4800, 835.5, 835.5, 60)),
    (r"\bH200\b", _card("H200 SXM", 4800, 989.4, 989.4, 67)),
    (
        r"\bA100\b.*80\s*GB.*\bPCIe\b|\bA100\b.*\bPCIe\b.*80\s*GB",
        _card("A100 PCIe 80GB", 1935, 312, 312, 19.5),
    ),
    (r"\bA100\b.*80\s*GB", _card("A100 SXM 80GB", 2039, 312, 312, 19.5)),
    (r"\bA100\b.*\bPCIe\b", _card("A100 PCIe 40GB", 1555, 312, 312, 19.5)),
    (r"\bA100\b", _card("A100 SXM 40GB", 1555, 312, 312, 19.5)),
    (r"\bL40S\b", _card("L40S", 864, 362.05, 362.05, 91.6)),
    (r"\bL40\b", _card("L40", 864, 181.05, 181.05, 90.5)),
    (r"\bL4\b", _card("L4", 300, 121, 121, 30.3)),
    (r"\bA10G\b", _card("A10G", 600, 70, 70, 35)),
    (r"\bA10\b", _card("A10", 600, 125, 125, 31.2)),
    (r"\bA40\b", _card("A40", 696, 149.7, 149.7, 37.4)),
    (r"\bRTX 4090\b(?! D\b)(?! Laptop)", _card("RTX 4090", 1008, 165.2, 165.2, 82.6)),
    (r"\bT4\b", _card("T4", 320, None, 65, 8.1)),
]


def lookup_card(gpu_name: str) -> Card | None:
    """The table's card for a GPU name as torch or NVML gives it ("NVIDIA H100 80GB HBM3"); None if unknown."""
    for pattern, card in CARDS:
        if re.search(pattern, gpu_name, re.IGNORECASE):
            return card
    return None
