"""A loaded model's shape for the roofline: the bytes a decode step reads and the FLOPs it does, from the
config (the text config of a VLM) and the parameters as they are stored."""

from __future__ import annotations

from typing import Any

import torch

from llmprof.analysis.roofline import ModelShape


def storage_bytes(tensor: torch.Tensor) -> int:
    """Bytes ``tensor`` really occupies: a tensor subclass (torchao's quantized weights, ...) counts the inner
    tensors it is made of, so a packed weight counts its packed bytes, not its logical shape."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None:
        names, _context = flatten(tensor)
        return sum(storage_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"{type(config).__name__} has no {names[0]}: cannot size the model for the roofline")


def _decode_path(model: Any) -> tuple[list[torch.nn.Module], torch.nn.Module | None]:
    """The modules every decode step runs (the decoder and the output head; not a vision tower), and the head."""
    head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    decoder = model.get_decoder() if callable(getattr(model, "get_decoder", None)) else None
    if decoder is None:
        return [model], head
    return [decoder] + ([head] if head is not None else []), head


def _linear_size(module: torch.nn.Module) -> int | None:
    """in x out of a Linear-like module (nn.Linear and the quantized linears that keep these attributes)."""
    size = [getattr(module, name, None) for name in ("in_features", "out_features")]
    return size[0] * size[1] if all(isinstance(v, int) for v in size) else None


# Mixtral, Qwen-MoE and DeepSeek name the count of routed experts differently
EXPERT_COUNT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts")


def _first_set(config: Any, *names: str) -> Any:
    """The first of ``names`` that ``config`` sets to a truthy value, else None."""
    return next((value for value in (getattr(config, name, None) for name in names) if value), None)


def _kv_heads(config: Any, heads: int) -> int:
    """The heads the KV cache keeps per layer."""
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        return 1  # Falcon's multi-query attention reports num_kv_heads = heads
    return _first_set(config, "num_key_value_heads") or heads


def _head_dims(config: Any, heads: int) -> tuple[int, int | None]:
    """(the head dimension of the QK and AV matmuls, the width cached per layer and token under multi-head latent
    attention, else None)."""
    head_dim = _first_set(config, "head_dim") or _config_int(config, "hidden_size") // heads
    if not getattr(config, "kv_lora_rank", None):
        return head_dim, None
    # multi-head latent attention caches one compressed latent; QK and AV have their own head dims
    latent = config.kv_lora_rank + config.qk_rope_head_dim
    return (config.qk_nope_head_dim + config.qk_rope_head_dim + config.v_head_dim) // 2, latent


def _sliding(config: Any, layers: int) -> tuple[int | None, int]:
    """(the sliding window, the layers that attend within it); (None, 0) without one."""
    window = getattr(config, "sliding_window", None) or None
    if window is None:
        return None, 0
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        sliding = sum(kind == "sliding_attention" for kind in layer_types)
    else:
        sliding = layers if getattr(config, "use_sliding_window", True) else 0
    return (window if sliding else None), sliding


def _stored_tensors(modules: list[torch.nn.Module]) -> dict[int, torch.Tensor]:
    """Each parameter and buffer of ``modules`` once (tied weights are one tensor), by id."""
    tensors: dict[int, torch.Tensor] = {}
    for module in modules:
        tensors.update((id(t), t) for t in module.parameters())
        tensors.update((id(t), t) for t in module.buffers())
    return tensors


def _routed_experts(config: Any, modules: list[torch.nn.Module]) -> tuple[dict[int, torch.Tensor], int, int]:
    """(the routed experts' tensors by id, the experts, the experts each token runs through); ({}, 0, 0) for a
    dense model. Shared experts are dense: they run for every token."""
    experts = _first_set(config, *EXPERT_COUNT_FIELDS) or 0
    per_token = _first_set(config, "num_experts_per_tok") or 0
    if not (experts and per_token):
        return {}, 0, 0
    routed = {
        id(t): t for module in modules for name, t in module.named_parameters() if ".experts." in f".{name}"
    }
    return (routed, experts, per_token) if routed else ({}, 0, 0)


def _matmul_params(module: torch.nn.Module) -> int:
    """The parameters of ``module`` itself that multiply every token: a Linear-like module's in x out, else its
    weights of two or more dimensions (GPT-2's Conv1D, fused expert tensors)."""
    size = _linear_size(module)
    if size is not None:
        return size
    return sum(p.numel() for p in module.parameters(recurse=False) if p.dim() >= 2)


def _lookup_tables(modules: list[torch.nn.Module], head_weight: Any) -> list[torch.nn.Embedding]:
    """The embedding tables that are only looked up (not the tied output head): a token reads its row, not the
    table."""
    return [m for m in modules if isinstance(m, torch.nn.Embedding) and m.weight is not head_weight]


def _head_params(head: torch.nn.Module | None) -> int:
    """The output head's matmul parameters (0 without a head)."""
    weight = getattr(head, "weight", None)
    return (_linear_size(head) or weight.numel()) if weight is not None else 0


def model_shape(model: Any, cache_dtype: torch.dtype | None = None) -> ModelShape:
    """The :class:`~llmprof.analysis.roofline.ModelShape` of a transformers model. ``cache_dtype``: the KV cache's dtype
    (default: the model's compute dtype). Raises ValueError for a config without layers or heads."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = _config_int(config, "num_hidden_layers")
    heads = _config_int(config, "num_attention_heads")
    head_dim, kv_width = _head_dims(config, heads)
    window, sliding = _sliding(config, layers)
    cache_dtype = cache_dtype or model.dtype

    modules, head = _decode_path(model)
    head_weight = getattr(head, "weight", None)
    tensors = _stored_tensors(modules)
    routed, experts, experts_per_token = _routed_experts(config, modules)
    every = list({id(m): m for root in modules for m in root.modules()}.values())  # each submodule once
    tables = _lookup_tables(every, head_weight)
    for table in tables:
        tensors.pop(id(table.weight), None)
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        weight_bytes=sum(storage_bytes(t) for t in tensors.values()),
        embedding_bytes_per_token=sum(t.embedding_dim * t.weight.element_size() for t in tables),
        matmul_params=sum(_matmul_params(m) for m in every if not isinstance(m, torch.nn.Embedding)),
        lm_head_params=_head_params(head),
        layers=layers,
        heads=heads,
        kv_heads=_kv_heads(config, heads),
        head_dim=head_dim,
        cache_dtype=str(cache_dtype).removeprefix("torch."),
        cache_dtype_bytes=cache_dtype.itemsize,
        sliding_window=window,
        sliding_layers=sliding,
        kv_width=kv_width,
        expert_bytes=sum(storage_bytes(t) for t in routed.values()),
        expert_params=sum(t.numel() for t in routed.values() if t.dim() >= 2),
        experts=experts,
        experts_per_token=experts_per_token,
    )
