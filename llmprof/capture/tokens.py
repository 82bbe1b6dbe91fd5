"""Token counting of a generate() call: which generation modes can be profiled step by step, the prompt's
real tokens, the most steps a call can run, and ``n_i``, the tokens each sequence really generated."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

PROFILED_MODES = ("greedy_search", "sample")  # transformers' GenerationMode values llmprof times step by step
ASSISTED = (
    "assisted_generation"  # ... and this one, with a draft model or prompt lookup: several tokens a step
)


def generation_mode(generation_config: Any, arguments: dict[str, Any]) -> str:
    """transformers' own generation mode of a call ("greedy_search", "sample", "assisted_generation",
    "beam_search", ...), from its final generation config and its arguments (the draft model is an argument,
    not a config field)."""
    try:
        mode = generation_config.get_generation_mode(arguments.get("assistant_model"))
    except Exception:  # noqa: BLE001 - a config of a model's own making: judge from its fields
        if (getattr(generation_config, "num_beams", 1) or 1) > 1:
            return "beam_search"
        assisted = arguments.get("assistant_model") is not None or getattr(
            generation_config, "prompt_lookup_num_tokens", None
        )
        return ASSISTED if assisted else "sample"
    return str(getattr(mode, "value", mode))


def unsupported_generation(generation_config: Any, arguments: dict[str, Any]) -> str | None:
    """Why a generate() call cannot be profiled step by step (None when it can): greedy, sampling, and
    assisted generation with a draft model, prompt lookup or early exit can; multi-token prediction cannot."""
    mode = generation_mode(generation_config, arguments)
    if mode == ASSISTED:
        if getattr(generation_config, "use_mtp", False):
            return "assisted generation by multi-token prediction"
        return None
    return None if mode in PROFILED_MODES else mode.replace("_", " ")


def unsupported_call(arguments: dict[str, Any]) -> str | None:
    """Why a generate() call cannot be profiled, known from its arguments alone (None when it may be)."""
    if arguments.get("cache_implementation") == "paged":
        return (
            "generate(cache_implementation='paged') runs continuous batching: its requests are recorded one by"
            " one (through generate_batch), not as this call"
        )
    return None


def input_tensor(arguments: dict[str, Any]) -> torch.Tensor | None:
    """The prompt tensor of generate()'s named arguments (ids or embeddings), if any."""
    for name in ("input_ids", "inputs", "inputs_embeds"):
        if isinstance(arguments.get(name), torch.Tensor):
            return arguments[name]
    return None


def max_steps(model: Any, arguments: dict[str, Any], prompt_tokens: int) -> int:
    """The most steps the call can run, from its arguments and configs (host-side values only)."""
    config = arguments.get("generation_config") or getattr(model, "generation_config", None)
    max_new = arguments.get("max_new_tokens", getattr(config, "max_new_tokens", None))
    if max_new is None:
        max_length = arguments.get("max_length", getattr(config, "max_length", None)) or 0
        max_new = max(max_length - prompt_tokens, 0)
    return int(max_new)


def output_length(output: Any) -> int:
    """Length of the sequences generate() returned (0 when it returned none)."""
    sequences = output if isinstance(output, torch.Tensor) else getattr(output, "sequences", None)
    return int(sequences.shape[-1]) if isinstance(sequences, torch.Tensor) and sequences.dim() >= 1 else 0


def generated_length(output: Any, start_length: int | None, steps: int) -> int | None:
    """Steps kept in generate()'s output, when it tells (a deferred stop check may run one extra step and undo
    it). ``start_length`` is the sequences' length before the first token (prompt, decoder start token, or 0).
    An output no longer than the steps has dropped its decoder prompt (Whisper's does): it tells nothing."""
    sequences = output if isinstance(output, torch.Tensor) else getattr(output, "sequences", None)
    if start_length is None or not isinstance(sequences, torch.Tensor) or sequences.dim() != 2:
        return None
    length = int(sequences.shape[1])
    return length - start_length if length > steps else None


def first_finished(flags: np.ndarray) -> list[int]:
    """Per sequence (column of ``flags``, one row a step), the step at which its flag was first set, else
    the number of steps."""
    done = flags != 0
    steps = done.shape[0]
    return np.where(done.any(axis=0), done.argmax(axis=0) + 1, steps).tolist()


def tokens_per_sequence(flags: np.ndarray | None, generated: int | None) -> list[int]:
    """``n_i``: for each sequence, the step at which a stopping criterion first said it was done (EOS, stop
    string, length limit, custom criteria), else the number of steps run, from the ``steps x batch`` flags.
    Padding after that step is not counted; neither are steps past the ``generated`` ones kept."""
    if flags is None or not len(flags):
        return []
    n = first_finished(flags)
    if generated is not None and 0 < generated < len(flags):
        n = [min(v, generated) for v in n]
    return n


def prefill_tokens(mask: torch.Tensor | None, rows: int | None, prompt_tokens: int, cached: int = 0) -> int:
    """Real prompt tokens the batch prefilled: padding (from the attention ``mask``, read once generate() has
    returned, so that it costs no extra sync), rows repeated by num_return_sequences and the ``cached`` tokens
    of each row already in the KV cache not counted."""
    if mask is not None:
        return int(mask.sum()) - (rows or 1) * cached
    return (rows or 1) * (prompt_tokens - cached)


def cache_argument() -> str:
    """The name generate() and forward take a KV cache by: ``cache`` (transformers 5.x), ``past_key_values``."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return (
        "cache"
        if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
        else "past_key_values"
    )


def cached_tokens(arguments: dict[str, Any]) -> int:
    """Tokens already in a KV cache that generate() was given: 0 without one."""
    cache = arguments.get("cache", arguments.get("past_key_values"))
    length = getattr(cache, "get_seq_length", None)
    return int(length()) if callable(length) else 0


def speculative_tokens(
    base: int | None, lengths: list[int], flags: np.ndarray | None, generated: int | None
) -> tuple[list[int], list[int]] | None:
    """Assisted generation: the tokens each step appended (the sequences' length after it, from ``base`` before
    the first) and ``n_i`` from the step at which each sequence was done; None when they do not add up."""
    if base is None or not lengths or flags is None or len(lengths) != len(flags):
        return None
    per_step = [b - a for a, b in zip([base, *lengths], lengths)]
    if min(per_step) < 1:
        return None
    reached = list(itertools.accumulate(per_step))
    counts = [reached[s - 1] for s in first_finished(flags)]
    if generated is not None:
        counts = [min(c, generated) for c in counts]
    return per_step, counts
