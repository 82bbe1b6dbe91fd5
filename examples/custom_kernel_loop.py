"""A decode loop around a custom kernel: the model's RMSNorms replaced by a kernel of one's own, registered as a
torch custom op (``llmprof_examples::rms_norm``), then decoded by the static-cache loop of ``gpt_fast_loop`` and
recorded with llmprof.Recorder.

    python -m llmprof run --patch examples.custom_kernel_loop:install --loop examples.custom_kernel_loop:decode
    python -m llmprof ab --b patch=examples.custom_kernel_loop:install                  # the kernel in generate()
    python -m llmprof ab --b patch=examples.custom_kernel_loop:install loop=examples.custom_kernel_loop:decode

The op's implementation here is plain torch (it runs on any device); a Triton or CUDA kernel takes its place
for one device with ``rms_norm.register_kernel("cuda")``, and every loop above measures it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from examples.gpt_fast_loop import greedy_static


@torch.library.custom_op("llmprof_examples::rms_norm", mutates_args=())
def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm in float32, as Llama's: ``weight * x / sqrt(mean(x^2) + eps)``, in the input's dtype."""
    x = hidden.float()
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(hidden.dtype)


@rms_norm.register_fake
def _(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.empty_like(hidden)


class CustomRMSNorm(torch.nn.Module):
    """A drop-in for a model's RMSNorm module that calls the custom op with the module's own weight."""

    def __init__(self, norm: torch.nn.Module):
        super().__init__()
        self.weight = norm.weight
        self.eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return rms_norm(hidden, self.weight, self.eps)


def install(model: torch.nn.Module) -> int:
    """The ``--patch`` function: every module whose class name ends in RMSNorm is replaced by
    :class:`CustomRMSNorm`; returns how many were."""
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child).__name__.endswith("RMSNorm")
    ]
    for parent, name, child in targets:
        setattr(parent, name, CustomRMSNorm(child))
    return len(targets)


def decode(model: Any, inputs: dict[str, Any], recorder: Any) -> None:
    """The ``--loop`` function: the eager static-cache greedy loop over the patched model."""
    if not any(isinstance(m, CustomRMSNorm) for m in model.modules()):
        raise RuntimeError(
            "the custom kernel is not installed: add --patch examples.custom_kernel_loop:install"
        )
    greedy_static(model, inputs, recorder, compiled=False)
