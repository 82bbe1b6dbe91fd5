"""The built-in demo model: a small Llama-architecture model with random weights and a byte-level BPE
tokenizer trained here on a generated corpus (no download). Built once into the cache directory
(``$LLMPROF_CACHE`` or ``~/.cache/llmprof``). Also :func:`quiet_progress`, which the other workload modules
(loading, the synthetic model) import from here, the one they all build on."""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from llmprof.cache import cache_dir
from llmprof.errors import ModelLoadError, first_line

DEMO_NAME = "demo"
DEMO_VERSION = 1
_WORDS = (
    "the",
    "a",
    "model",
    "token",
    "time",
    "first",
    "every",
    "step",
    "cache",
    "layer",
    "attention",
    "head",
    "prefill",
    "decode",
    "sample",
    "kernel",
    "memory",
    "bandwidth",
    "latency",
    "throughput",
    "profile",
    "measure",
    "clock",
    "event",
    "stream",
    "device",
    "host",
    "queue",
    "batch",
    "sequence",
    "prompt",
    "output",
    "input",
    "weight",
    "matrix",
    "vector",
    "fast",
    "slow",
    "small",
    "large",
    "quiet",
    "river",
    "mountain",
    "light",
    "morning",
    "evening",
    "city",
    "story",
    "reader",
    "writer",
    "number",
    "question",
    "answer",
    "because",
    "while",
    "after",
    "before",
    "under",
    "over",
    "into",
    "with",
    "from",
    "and",
    "or",
)


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """transformers' progress bars (loading weights, writing shards: a second of noise in llmprof's output) off
    inside, and as they were after; the hub's download bars as they were (a download is worth watching). Left
    alone where the user asked for every bar (``HF_HUB_DISABLE_PROGRESS_BARS=0``)."""
    from huggingface_hub import constants
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled() or constants.HF_HUB_DISABLE_PROGRESS_BARS is False:
        yield
        return
    downloads = not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # the hub's too
    if downloads:
        hub.enable_progress_bars()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()  # the hub's too
        if not downloads:
            hub.disable_progress_bars()


def demo_path() -> Path:
    """The demo model's directory, built on first use. Raises ModelLoadError, naming ``LLMPROF_CACHE``, when
    the cache directory cannot hold it (a file, read-only, full)."""
    path = cache_dir() / f"demo-v{DEMO_VERSION}"
    try:
        if not (path / "config.json").exists():
            _build_demo(path)
    except Exception as exc:  # noqa: BLE001 - OSError, and safetensors' own error on a full disk
        reason = getattr(exc, "strerror", None) or first_line(exc, type(exc).__name__)
        raise ModelLoadError(
            f"cannot build the demo model in {cache_dir()} ({reason}): set LLMPROF_CACHE to a writable directory"
        ) from None
    return path


def _demo_corpus(lines: int = 4000, seed: int = 0) -> list[str]:
    """English-like sentences: common words plus invented ones, enough for a vocabulary of about 2k tokens."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ar", "en", "on")]
    words = list(_WORDS) + ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(3000)]
    return [" ".join(rng.choices(words, k=rng.randint(6, 18))).capitalize() + "." for _ in range(lines)]


def train_demo_tokenizer() -> Any:
    """The demo's byte-level BPE tokenizer (2048 tokens), trained here in about a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_demo_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


@quiet_progress()
def _build_demo(path: Path) -> None:
    """Train the tokenizer and save a randomly initialized model into ``path``, atomically."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_demo_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(path)
    except OSError:
        if not (path / "config.json").exists():  # not a concurrent build that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
