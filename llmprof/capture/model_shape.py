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


def model_shape(model: Any, cache_dtype: torch.dtype | None = None) -> ModelShape:
    """The :class:`~llmprof.analysis.roofline.ModelShape` of a transformers model. ``cache_dtype``: the KV cache's dtype
    (default: the model's compute dtype). Raises ValueError for a config without layers or heads."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = _config_int(config, "num_hidden_layers")
    heads = _config_int(config, "num_attention_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        kv_heads = 1  # Falcon's multi-query attention reports num_kv_heads = heads
    head_dim = getattr(config, "head_dim", None) or _config_int(config, "hidden_size") // heads
    kv_width = None
    if getattr(config, "kv_lora_rank", None):  # multi-head latent attention caches one compressed latent
        kv_width = config.kv_lora_rank + config.qk_rope_head_dim
        head_dim = (config.qk_nope_head_dim + config.qk_rope_head_dim + config.v_head_dim) // 2  # QK and AV
    experts = (
        getattr(config, "num_local_experts", None)
        or getattr(config, "num_experts", None)
        or getattr(config, "n_routed_experts", None)
        or 0
    )
    experts_per_token = getattr(config, "num_experts_per_tok", None) or 0
    window = getattr(config, "sliding_window", None) or None
    layer_types = getattr(config, "layer_types", None)
    if window is None:
        sliding = 0
    elif layer_types:
        sliding = sum(kind == "sliding_attention" for kind in layer_types)
    else:
        sliding = layers if getattr(config, "use_sliding_window", True) else 0
    cache_dtype = cache_dtype or model.dtype

    modules, head = _decode_path(model)
    head_weight = getattr(head, "weight", None)
    tensors: dict[int, torch.Tensor] = {}  # each parameter or buffer once (tied weights are one tensor)
    for module in modules:
        tensors.update((id(t), t) for t in module.parameters())
        tensors.update((id(t), t) for t in module.buffers())
    routed = (
        {  # the routed experts' tensors (shared experts are dense: they run for every token)
            id(t): t
            for module in modules
            for name, t in module.named_parameters()
            if ".experts." in f".{name}"
        }
        if experts and experts_per_token
        else {}
    )
    looked_up = 0
    matmul_params = 0
    for module in {id(m): m for root in modules for m in root.modules()}.values():
        if isinstance(module, torch.nn.Embedding):
            if module.weight is not head_weight:  # a table that is only looked up: its rows, not the table
                tensors.pop(id(module.weight), None)
                looked_up += module.embedding_dim * module.weight.element_size()
            continue
        size = _linear_size(module)
        if size is not None:
            matmul_params += size
        else:  # other weights that multiply every token (GPT-2's Conv1D, fused expert tensors)
            matmul_params += sum(p.numel() for p in module.parameters(recurse=False) if p.dim() >= 2)
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        weight_bytes=sum(storage_bytes(t) for t in tensors.values()),
        embedding_bytes_per_token=looked_up,
        matmul_params=matmul_params,
        lm_head_params=(_linear_size(head) or head_weight.numel()) if head_weight is not None else 0,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        cache_dtype=str(cache_dtype).removeprefix("torch."),
        cache_dtype_bytes=cache_dtype.itemsize,
        sliding_window=window if sliding else None,
        sliding_layers=sliding,
        kv_width=kv_width,
        expert_bytes=sum(storage_bytes(t) for t in routed.values()),
        expert_params=sum(t.numel() for t in routed.values() if t.dim() >= 2),
        experts=experts if routed else 0,
        experts_per_token=experts_per_token if routed else 0,
    )
