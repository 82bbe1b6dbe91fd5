"""A generate()-capable model whose forward takes a known time: the ground truth that llmprof is checked against.

Prefill (no generated token yet) takes ``prefill_ms``, every decode step ``decode_ms`` + ``row_ms`` per
sequence of the batch + ``kv_ms_per_1k`` per 1000 tokens of context (the sequence so far, over all rows: the
cost of reading a KV cache), and every forward then runs the named operators of ``ops`` (name -> ms, each a ``record_function`` range: what a kernel profile
attributes). On CPU the forward busy-waits on the host; with ``device_sleep=True`` it spins the GPU (``torch.cuda._sleep``) while the host
returns at once, so that only an event-based timeline reports the right times. Row ``i`` emits EOS at step
``eos_at[i]`` (0 or missing: never); a batch of ``oom_at_batch`` rows or more raises an out-of-memory error
(a failure a sweep must survive). The model keeps nothing in a cache (with ``use_cache`` it only grows the
length of the one it is given, which a sweep's depth reads): it counts its forwards since generate() began,
so nothing in its forward reads a device value (which would synchronize). Saved by :func:`save_synthetic`,
it loads like any model: ``python -m llmprof run --model DIR`` (importing this module registers its type).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    DynamicCache,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from llmprof.capture.tokens import cache_argument
from llmprof.workloads.demo import quiet_progress, train_demo_tokenizer

PAD_ID, EOS_ID = 0, 1
FIRST_CONTENT_ID = 2


class SyntheticConfig(PretrainedConfig):
    """Timing and EOS script of :class:`SyntheticModel`."""

    model_type = "llmprof_synthetic"

    def __init__(
        self,
        prefill_ms: float = 40.0,
        decode_ms: float = 15.0,
        eos_at: list[int] | None = None,
        vocab_size: int = 64,
        device_sleep: bool = False,
        cycles_per_ms: float = 1.4e6,
        jitter: float = 0.0,
        seed: int = 0,
        ops: dict[str, float] | None = None,
        row_ms: float = 0.0,
        kv_ms_per_1k: float = 0.0,
        oom_at_batch: int = 0,
        **kwargs: Any,
    ):
        kwargs.setdefault("eos_token_id", EOS_ID)
        kwargs.setdefault("pad_token_id", PAD_ID)
        kwargs.setdefault("use_cache", False)
        kwargs.setdefault("num_hidden_layers", 1)  # generate() may size a cache that the model never fills
        super().__init__(**kwargs)
        self.prefill_ms = prefill_ms
        self.decode_ms = decode_ms
        self.eos_at = list(eos_at or [])
        self.vocab_size = vocab_size
        self.device_sleep = device_sleep
        self.cycles_per_ms = cycles_per_ms
        self.jitter = jitter  # each forward's time is scaled by exp(N(0, jitter)): run-to-run noise, seeded
        self.seed = seed
        self.ops = dict(ops or {})  # named operators every forward also runs: name -> ms (host busy-wait)
        self.row_ms = row_ms  # decode: + this per sequence of the batch
        self.kv_ms_per_1k = kv_ms_per_1k  # decode: + this per 1000 tokens of context, summed over the rows
        self.oom_at_batch = oom_at_batch  # 0: never


class SyntheticModel(PreTrainedModel, GenerationMixin):
    """See the module docstring. ``forward_log`` keeps (start_ns, end_ns, generated) of every forward on the host."""

    config_class = SyntheticConfig
    main_input_name = "input_ids"

    def __init__(self, config: SyntheticConfig):
        super().__init__(config)
        # gives the model a vocabulary, a device and a dtype
        self.embed = torch.nn.Embedding(config.vocab_size, 1)
        self.forward_log: list[tuple[int, int, int]] = []
        self._forwards = 0
        self._prompt_len = 0
        self._rng = random.Random(config.seed)
        self.op_ms = dict(config.ops)  # the named operators' cost, per instance (a patch may change it)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing to initialize: the model has no real weights."""

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embed

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """GenerationMixin.generate, counting forwards from zero."""
        self._forwards = 0
        return super().generate(*args, **kwargs)

    def forward(self, input_ids: torch.LongTensor, **_kwargs: Any) -> CausalLMOutputWithPast:
        """Build the logits of the scripted tokens, then wait out the rest of the step's programmed time."""
        start = time.perf_counter_ns()
        config = self.config
        generated = self._forwards
        self._forwards += 1
        step = generated + 1  # the step whose token this forward produces
        batch = input_ids.shape[0]
        cache = self._cache(_kwargs, batch, input_ids.shape[1])
        if generated == 0:  # the prompt (after the tokens a given cache holds): later forwards see one token
            self._prompt_len = input_ids.shape[1] + (
                cache.get_seq_length() - input_ids.shape[1] if cache else 0
            )
        context = self._prompt_len + generated  # the tokens before the one this forward produces
        if config.oom_at_batch and batch >= config.oom_at_batch:
            raise RuntimeError(f"out of memory (synthetic: a batch of {batch} >= {config.oom_at_batch})")
        # the last position's logits only (all generate() reads): the cost does not grow with the sequence
        logits = torch.zeros(batch, 1, config.vocab_size, device=input_ids.device)
        for i in range(batch):  # scalar fills: no host-to-device copy, so no synchronization
            eos = i < len(config.eos_at) and config.eos_at[i] == step
            logits[
                i, -1, EOS_ID if eos else FIRST_CONTENT_ID + step % (config.vocab_size - FIRST_CONTENT_ID)
            ] = 100.0
        logits = logits + self.embed.weight[0, 0].to(logits.dtype) * 0
        duration_ms = config.prefill_ms if generated == 0 else decode_step_ms(config, batch, context)
        if config.jitter:
            duration_ms *= math.exp(self._rng.gauss(0.0, config.jitter))
        if config.device_sleep:
            torch.cuda._sleep(int(duration_ms * config.cycles_per_ms))
        else:  # the whole forward, logits included, takes the programmed time
            deadline = start + int(duration_ms * 1e6)
            while time.perf_counter_ns() < deadline:
                pass
        if self.op_ms:
            _named_operators(self.op_ms)
        self.forward_log.append((start, time.perf_counter_ns(), generated))
        return CausalLMOutputWithPast(logits=logits, **{cache_argument(): cache})

    @staticmethod
    def _cache(kwargs: dict[str, Any], batch: int, tokens: int) -> Any:
        """With ``use_cache``: the given KV cache (or a new one), grown by this forward's tokens (the model
        stores nothing real in it; its length is what a sweep's depth reads). None without."""
        if not kwargs.get("use_cache"):
            return None
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is None:
            cache = DynamicCache()
        placeholder = torch.zeros(batch, 1, tokens, 1)
        cache.update(placeholder, placeholder, 0)
        return cache


def decode_step_ms(config: SyntheticConfig, batch: int, context: int) -> float:
    """The programmed time of a decode forward over ``batch`` sequences of ``context`` tokens each."""
    return config.decode_ms + config.row_ms * batch + config.kv_ms_per_1k * batch * context / 1000


def _named_operators(op_ms: dict[str, float]) -> None:
    """Each operator busy-waits its time inside a range of its own name (what a kernel profile attributes)."""
    for name, ms in op_ms.items():
        with torch.profiler.record_function(name):
            deadline = time.perf_counter_ns() + int(ms * 1e6)
            while time.perf_counter_ns() < deadline:
                pass


def synthetic_model(**config: Any) -> SyntheticModel:
    """Build a :class:`SyntheticModel` from :class:`SyntheticConfig` keyword arguments."""
    return SyntheticModel(SyntheticConfig(**config)).eval()


@quiet_progress()
def save_synthetic(path: str | Path, **config: Any) -> Path:
    """Save a :class:`SyntheticModel` (``config`` as for :class:`SyntheticConfig`) with the demo tokenizer."""
    synthetic_model(**config).save_pretrained(path)
    train_demo_tokenizer().save_pretrained(path)
    return Path(path)


def synthetic_prompt(batch: int, length: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """generate() inputs for the synthetic model: ``batch`` prompts of ``length`` content ids."""
    ids = torch.full((batch, length), FIRST_CONTENT_ID)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


AutoConfig.register(SyntheticConfig.model_type, SyntheticConfig, exist_ok=True)
AutoModelForCausalLM.register(SyntheticConfig, SyntheticModel, exist_ok=True)
