"""A spec's inputs for a loaded model: the batch of prompts (a text tokenized, or synthetic ids drawn without the
special tokens), the generate() arguments, and the checks that they fit the model's context and the device's
memory (docs/architecture.md, "The workload")."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from llmprof.errors import UsageError
from llmprof.workloads.memory import check_fits
from llmprof.workloads.models import TOKENIZER_FILES, LoadedModel
from llmprof.workloads.runner import depth_cache
from llmprof.workloads.spec import Loaded, WorkloadSpec


@dataclass
class Inputs:
    """The prompts on the model's device, the generate() arguments, and what the config records of them."""

    tensors: dict[str, Any]
    generate_kwargs: dict[str, Any]
    loaded: Loaded
    cache: Any = (
        None  # the KV cache holding a sweep's depth, cropped back to ``depth`` tokens after each call
    )
    depth: int = 0

    def at_depth(self, model: Any, depth: int, seed: int) -> Inputs:
        """These prompts behind ``depth`` tokens already in a KV cache, made by ``model`` now (see
        :func:`llmprof.workloads.runner.depth_cache`); raises CaptureError for a model without a cache."""
        if not depth:
            return self
        tensors, cache = depth_cache(model, self.tensors, depth, seed)
        return replace(self, tensors=tensors, cache=cache, depth=depth)

    def restore(self) -> None:
        """Crop the depth's cache back to ``depth`` tokens after a call (the next starts at the same depth)."""
        if self.cache is not None and self.cache.get_seq_length() > self.depth:
            self.cache.crop(self.depth - self.cache.get_seq_length())  # (a negative length: drop that many)

    def for_loop(self, spec: WorkloadSpec) -> dict[str, Any]:
        """What a decode loop of one's own is given: the prompts and ``max_new_tokens``."""
        return {**self.tensors, "max_new_tokens": spec.max_new_tokens}


def build_inputs(loaded: LoadedModel, spec: WorkloadSpec) -> Inputs:
    """The prompts and generate() arguments of ``spec`` for a loaded model (torch's RNG seeded with the spec's
    seed after); raises UsageError when they do not fit its context or the device's memory."""
    tensors, prompt_tokens, tokenize_s = _prompts(loaded, spec)
    torch.manual_seed(spec.seed)
    facts = Loaded(
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        attn_implementation=getattr(loaded.model.config, "_attn_implementation", spec.attn_implementation),
        prompt_tokens=prompt_tokens,
        tokenize_s=tokenize_s,
    )
    return Inputs(tensors, _generate_kwargs(loaded, spec), facts)


def _prompts(loaded: LoadedModel, spec: WorkloadSpec) -> tuple[dict[str, Any], int, float | None]:
    """The batch of prompts on the model's device, its length, and the tokenization time (None if synthetic)."""
    tokenize_s = None
    if spec.prompt is not None:
        if loaded.tokenizer is None:
            raise UsageError(
                f"--prompt: the folder {spec.model!r} has no tokenizer (no {' or '.join(TOKENIZER_FILES)});"
                " --prompt-len N needs none (synthetic token ids)"
            )
        start = time.perf_counter()
        ids = loaded.tokenizer(spec.prompt, return_tensors="pt").input_ids
        tokenize_s = time.perf_counter() - start
        if ids.shape[1] == 0:
            raise UsageError("--prompt tokenizes to zero tokens")
        check_room(loaded, spec, int(ids.shape[1]))
        ids = ids.repeat(spec.batch_size, 1)
    else:
        check_room(loaded, spec, spec.prompt_length)  # before allocating the prompts
        ids = _synthetic_ids(loaded, spec)
    tensors = {"input_ids": ids.to(loaded.device), "attention_mask": torch.ones_like(ids).to(loaded.device)}
    return tensors, int(ids.shape[1]), tokenize_s


def _synthetic_ids(loaded: LoadedModel, spec: WorkloadSpec) -> torch.Tensor:
    """``batch_size`` x ``prompt_length`` ids drawn with the spec's seed from the ordinary tokens."""
    vocab, special_ids = _vocabulary(loaded)
    return synthetic_ids(vocab, special_ids, spec)


def synthetic_ids(vocab: int, special_ids: set[int], spec: WorkloadSpec) -> torch.Tensor:
    """``batch_size`` x ``prompt_length`` ids drawn with the spec's seed from ``range(vocab)`` less the
    special ids; raises UsageError when nothing is left to draw from."""
    special = torch.tensor(sorted(special_ids), dtype=torch.long)
    allowed = torch.arange(vocab)[~torch.isin(torch.arange(vocab), special)]
    if not len(allowed):
        raise UsageError(f"model {spec.model!r} has no ordinary token to build a prompt from")
    generator = torch.Generator().manual_seed(spec.seed)
    return allowed[torch.randint(len(allowed), (spec.batch_size, spec.prompt_length), generator=generator)]


def _vocabulary(loaded: LoadedModel) -> tuple[int, set[int]]:
    """The ids a synthetic prompt draws from (those below the first) less the special ones: the tokenizer's,
    or without one the model configuration's vocabulary size and its BOS, EOS, pad and decoder-start ids."""
    embeddings = loaded.model.get_input_embeddings().num_embeddings
    if loaded.tokenizer is not None:
        return min(len(loaded.tokenizer), embeddings), set(loaded.tokenizer.all_special_ids)
    config = loaded.model.config
    text = getattr(config, "get_text_config", lambda: config)()
    special: set[int] = set()
    for source in (text, loaded.model.generation_config):
        for field in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            value = getattr(source, field, None)
            special.update(value if isinstance(value, list) else [] if value is None else [value])
    return min(getattr(text, "vocab_size", None) or embeddings, embeddings), special


def check_room(loaded: LoadedModel, spec: WorkloadSpec, prompt_tokens: int) -> None:
    """The spec's depth, prompt and new tokens fit the model's context, and the run the device's memory (unless
    the spec skips the memory check, or spreads the model over devices: the estimate is for one)."""
    context = loaded.context_length
    depth = spec.depth  # a sweep's tokens already in the KV cache before the prompt
    before = f"--depth {depth} + " if depth else ""
    if context is not None and depth + prompt_tokens + spec.max_new_tokens > context:
        raise UsageError(
            f"{before}prompt of {prompt_tokens} tokens + --max-new-tokens {spec.max_new_tokens} exceeds the "
            f"model's context of {context} tokens"
        )
    if spec.memory_check and not spec.device_map:
        check_fits(loaded.model, loaded.device, spec.batch_size, depth + prompt_tokens, spec.max_new_tokens)


def _generate_kwargs(loaded: LoadedModel, spec: WorkloadSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": spec.max_new_tokens, "do_sample": spec.do_sample}
    ids = loaded.tokenizer if loaded.tokenizer is not None else loaded.model.generation_config
    pad = ids.pad_token_id if ids.pad_token_id is not None else ids.eos_token_id
    pad = pad[0] if isinstance(pad, list) and pad else pad  # a generation config's EOS may be a list
    if pad is not None:
        kwargs["pad_token_id"] = pad
    if not spec.do_sample:  # silence the warnings about sampling parameters that greedy ignores
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if spec.ignore_eos:
        kwargs["min_new_tokens"] = spec.max_new_tokens
    return kwargs
