"""Will a run fit? The memory generate() needs for a batch of B x (prompt + new tokens) beyond the loaded
weights, against what the device has free, so that a run that cannot fit is refused before any work rather
than killed (or another process killed) by the out-of-memory killer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llmprof.errors import UsageError

HEADROOM = 0.9  # of the free memory: the allocator, the framework and the sampler need some too
GIB = 2**30
# a position's token id, mask, position ids and the copies generate() makes of them, as int64: 56 bytes a position
# measured (the synthetic model at --depth 2e7, peak RSS), counted 64: all that a model of no known size needs
INPUT_BYTES = 64


@dataclass(frozen=True)
class Estimate:
    """Bytes a run needs beyond the weights: the KV cache, the logits, the prefill's activations."""

    kv_cache: int
    logits: int
    activations: int
    inputs: int  # the token ids, their mask and positions: all a model whose config gives no size is known to need

    @property
    def total(self) -> int:
        return self.kv_cache + self.logits + self.activations + self.inputs


def estimate(model: Any, batch: int, prompt: int, new_tokens: int) -> Estimate:
    """A generous estimate from the config (the text config of a VLM) and the dtype of the weights."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    width = model.dtype.itemsize if isinstance(getattr(model, "dtype", None), torch.dtype) else 4
    hidden = getattr(config, "hidden_size", 0) or 0
    layers = getattr(config, "num_hidden_layers", 0) or 0
    heads = getattr(config, "num_attention_heads", 0) or 1
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    vocab = getattr(config, "vocab_size", 0) or 0
    inner = getattr(config, "intermediate_size", 0) or 4 * hidden
    positions = batch * (prompt + new_tokens)
    return Estimate(
        kv_cache=2 * layers * kv_heads * head_dim * width * positions,
        logits=3 * batch * vocab * 4,  # float32 scores of the last position, and the processors' copies
        activations=batch * prompt * (4 * hidden + 2 * inner) * width,  # one layer of the prefill at a time
        inputs=positions * INPUT_BYTES,
    )


def free_bytes(device: torch.device) -> int | None:
    """What the device has free now: a GPU's free memory, the machine's available memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_copies(model: Any, device: torch.device, copies: dict[str, torch.dtype]) -> None:
    """Raise UsageError when the copies of the model that variants need (name -> its dtype) cannot fit."""
    free = free_bytes(device)
    need = sum(sum(p.numel() for p in model.parameters()) * dtype.itemsize for dtype in copies.values())
    if free is None or need <= HEADROOM * free:
        return
    raise UsageError(
        f"variant(s) {', '.join(copies)} run on their own copy of the model: about {need / GIB:.1f} GiB, and"
        f" {device} has {free / GIB:.1f} GiB free (or --no-memory-check)"
    )


def check_fits(model: Any, device: torch.device, batch: int, prompt: int, new_tokens: int) -> None:
    """Raise UsageError, with the figures, when the run cannot fit in what the device has free."""
    need = estimate(model, batch, prompt, new_tokens)
    free = free_bytes(device)
    if free is None or need.total <= HEADROOM * free:
        return
    raise UsageError(
        f"a batch of {batch} x ({prompt} + {new_tokens}) tokens needs about {need.total / GIB:.1f} GiB beyond the"
        f" weights (KV cache {need.kv_cache / GIB:.1f}, logits {need.logits / GIB:.1f}, activations"
        f" {need.activations / GIB:.1f}, inputs {need.inputs / GIB:.1f}) and {device} has {free / GIB:.1f} GiB"
        " free: lower --batch-size, --prompt-len or --max-new-tokens (or --no-memory-check)"
    )
