"""Loading models for the CLI, and the built-in demo model (built locally, no download, cached).

The demo is a small Llama-architecture model with random weights and a byte-level BPE tokenizer trained on a
generated corpus. It is built once into the cache directory (``$LLMPROF_CACHE`` or ``~/.cache/llmprof``).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEMO_NAME = "demo"
DEMO_VERSION = 1
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}

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


class ModelLoadError(Exception):
    """A model or its tokenizer could not be loaded; the message is meant for the user as is."""


@dataclass
class LoadedModel:
    """A model ready for generate(), its tokenizer, and what the run report needs to know about it."""

    model: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def context_length(self) -> int | None:
        config = getattr(self.model.config, "get_text_config", lambda: self.model.config)()
        return getattr(config, "max_position_embeddings", None)


def cache_dir() -> Path:
    """Where llmprof keeps the demo model."""
    return Path(os.environ.get("LLMPROF_CACHE", Path.home() / ".cache" / "llmprof"))


def demo_path() -> Path:
    """The demo model's directory, built on first use."""
    path = cache_dir() / f"demo-v{DEMO_VERSION}"
    if not (path / "config.json").exists():
        _build_demo(path)
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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Raises ModelLoadError for a device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ModelLoadError(f"--device {name}: choose auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only torch build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} torch"
            )
            raise ModelLoadError(f"--device {name}: no CUDA GPU is available here ({build})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelLoadError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on a GPU that supports it, float16 on other GPUs, float32 on CPU."""
    name = DTYPE_ALIASES.get(name, name)
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}; choose from auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def load_model(
    name: str, device: str = "auto", dtype: str = "auto", attn_implementation: str | None = None
) -> LoadedModel:
    """Load ``name`` (``demo``, a local directory or a hub id) for generation. Raises ModelLoadError."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
    from transformers.utils import logging as hf_logging

    import llmprof.synthetic  # noqa: F401 - registers the synthetic model type with the Auto classes

    hf_logging.disable_progress_bar()

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if name == DEMO_NAME:
        source = str(demo_path())
    else:
        source = str(Path(name).expanduser())
        local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(source).exists()
        if local and not Path(source).is_dir():
            raise ModelLoadError(f"model path {name!r} does not exist or is not a directory")
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    errors = []
    model = None
    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        try:
            model = auto.from_pretrained(source, **kwargs)
            break
        except Exception as exc:  # noqa: BLE001 - any loading failure becomes the user's one-line error
            errors.append(_first_line(exc))
    if model is None:
        if all(e.startswith("Unrecognized configuration class") for e in errors):
            raise ModelLoadError(
                f"model {name!r} has no generate(): it is neither a causal LM nor an image-text-to-text model"
            )
        raise ModelLoadError(f"cannot load model {name!r}: {errors[0]}")
    if not callable(getattr(model, "generate", None)) or not model.can_generate():
        raise ModelLoadError(f"model {name!r} ({type(model).__name__}) has no generate()")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {name!r}: {_first_line(exc)}") from exc
    model.to(torch_device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, device=torch_device, dtype=torch_dtype)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
