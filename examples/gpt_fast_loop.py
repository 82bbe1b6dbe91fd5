"""A gpt-fast-style decode loop, profiled with llmprof.Recorder: a static KV cache allocated once, the decode
step compiled with torch.compile, greedy sampling by argmax, one token a step.

    python -m llmprof run --loop examples.gpt_fast_loop:decode --json loop.json     # this loop
    python -m llmprof run --json generate.json                                       # the same model's generate()
    python -m llmprof compare generate.json loop.json
    python -m llmprof ab --b loop=examples.gpt_fast_loop:decode                      # both, interleaved

``decode_eager`` is the same loop without torch.compile (the first compile of a step takes tens of seconds on
a CPU). The loop does less host work per step than generate() (no logits processors, no stopping criteria,
no attention-mask growth): its TPOT is the floor that generate()'s own overhead sits on.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import StaticCache


def decode(model: Any, inputs: dict[str, Any], recorder: Any) -> None:
    """The loop of ``run --loop``: ``inputs`` holds ``input_ids`` and ``max_new_tokens``."""
    greedy_static(model, inputs, recorder, compiled=True)


def decode_eager(model: Any, inputs: dict[str, Any], recorder: Any) -> None:
    """:func:`decode` without torch.compile."""
    greedy_static(model, inputs, recorder, compiled=False)


_COMPILED: dict[int, Any] = {}


def _step(model: Any, compiled: bool) -> Any:
    """The model's forward, compiled once per model (gpt-fast compiles its decode step the same way)."""
    if not compiled:
        return model.forward
    if id(model) not in _COMPILED:
        _COMPILED[id(model)] = torch.compile(model.forward, dynamic=False)
    return _COMPILED[id(model)]


def _cache_argument(model: Any) -> str:
    """transformers 5 names the cache argument ``cache``, 4.x ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def greedy_static(model: Any, inputs: dict[str, Any], recorder: Any, compiled: bool) -> torch.Tensor:
    """Prefill, then ``max_new_tokens - 1`` decode steps through a static cache; ``recorder`` records them.
    Returns the new tokens (batch x max_new_tokens)."""
    ids, new_tokens = inputs["input_ids"], inputs["max_new_tokens"]
    batch, prompt = ids.shape
    cache = StaticCache(config=model.config, max_cache_len=prompt + new_tokens)
    name, step = _cache_argument(model), _step(model, compiled)
    device = ids.device
    with torch.no_grad(), recorder.request(batch=batch, prompt_tokens=prompt, max_steps=new_tokens):
        with recorder.prefill():
            logits = model(
                input_ids=ids, cache_position=torch.arange(prompt, device=device), **{name: cache}
            ).logits
        token = logits[:, -1:].argmax(-1)
        recorder.token()
        tokens = [token]
        for k in range(1, new_tokens):
            position = torch.tensor([prompt + k - 1], device=device)
            with recorder.forward():
                logits = step(input_ids=token, cache_position=position, **{name: cache}).logits
            token = logits[:, -1:].argmax(-1)
            recorder.token()
            tokens.append(token)
    return torch.cat(tokens, dim=1)
