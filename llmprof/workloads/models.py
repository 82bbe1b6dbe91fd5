"""Loading models for the CLI: the built-in demo, a local directory or a hub id, on a device in a dtype."""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmprof.errors import ModelLoadError, first_line
from llmprof.workloads.demo import DEMO_NAME, demo_path, quiet_progress

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")  # a tokenizer's save_pretrained writes both


@dataclass
class LoadedModel:
    """A model ready for generate(), its tokenizer (None: a folder without one), and what the run report needs
    to know about it."""

    model: Any
    tokenizer: Any | None
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def context_length(self) -> int | None:
        config = getattr(self.model.config, "get_text_config", lambda: self.model.config)()
        return getattr(config, "max_position_embeddings", None)


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


@quiet_progress()
def load_model(
    name: str,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str | None = None,
    tp: bool = False,
    device_map: str | None = None,
) -> LoadedModel:
    """Load ``name`` (``demo``, a local directory or a hub id) for generation; with ``tp``, sharded over the
    ranks of this torchrun job (transformers' ``tp_plan="auto"``: this rank's shard on its own GPU, or on the
    CPU with gloo); with ``device_map`` (auto, balanced, sequential), spread over this machine's GPUs by
    accelerate (``device`` is then where its forward starts). A local directory without a tokenizer (none of
    TOKENIZER_FILES) loads without one. Raises ModelLoadError."""
    import llmprof.workloads.synthetic  # noqa: F401 - registers the synthetic model type with the Auto classes

    if device_map is not None:
        _check_device_map(device_map, device, tp)
    torch_device = resolve_device(device)
    if tp and torch_device.type == "cuda":
        torch_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # where tp_plan puts it
    torch_dtype = resolve_dtype(dtype, torch_device)
    source = _model_source(name)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if tp:
        _check_tensor_parallel(name, source)
        kwargs.update(_tensor_parallel_kwargs())
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = _generating_model(name, source, kwargs)
    tokenizer = _tokenizer(name, source)
    if device_map is not None:  # where accelerate put it: the device its forward starts on
        from llmprof.capture.timeline import model_devices

        torch_device = model_devices(model)[0]
    elif not tp:  # a sharded model is where tp_plan put it
        model.to(torch_device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, device=torch_device, dtype=torch_dtype)


def _model_source(name: str) -> str:
    """What from_pretrained loads ``name`` from: the demo's folder, a local directory, or the hub id (checked to
    be cached or reachable). Raises ModelLoadError."""
    if name == DEMO_NAME:
        return str(demo_path())
    source = str(Path(name).expanduser())
    local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(source).exists()
    if local and not Path(source).is_dir():
        raise ModelLoadError(f"model path {name!r} does not exist or is not a directory")
    if not local:
        _check_hub(name)
    return source


def _generating_model(name: str, source: str, kwargs: dict[str, Any]) -> Any:
    """The model at ``source`` as a causal LM, else as an image-text-to-text model; raises ModelLoadError when
    neither loads or it cannot generate()."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    errors = []
    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        try:
            model = auto.from_pretrained(source, **kwargs)
            break
        except Exception as exc:  # noqa: BLE001 - any loading failure becomes the user's one-line error
            errors.append(first_line(exc, type(exc).__name__))
    else:
        if all(e.startswith("Unrecognized configuration class") for e in errors):
            raise ModelLoadError(
                f"model {name!r} has no generate(): it is neither a causal LM nor an image-text-to-text model"
            )
        raise ModelLoadError(f"cannot load model {name!r}: {errors[0]}")
    if not callable(getattr(model, "generate", None)) or not model.can_generate():
        raise ModelLoadError(f"model {name!r} ({type(model).__name__}) has no generate()")
    return model


def _tokenizer(name: str, source: str) -> Any | None:
    """The tokenizer at ``source``; None for a local directory without one (none of TOKENIZER_FILES)."""
    from transformers import AutoTokenizer

    if Path(source).is_dir() and not any((Path(source) / file).exists() for file in TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer of {name!r}: {first_line(exc, type(exc).__name__)}"
        ) from exc


def _check_tensor_parallel(name: str, source: str) -> None:
    """Fail in one line, before loading, when the model cannot be sharded over this job's ranks: accelerate
    missing, or heads that the world size does not divide."""
    import importlib.util

    from transformers import AutoConfig

    if importlib.util.find_spec("accelerate") is None:
        raise ModelLoadError(
            "--tp loads with tp_plan='auto', which needs accelerate: pip install 'llmprof[dist]'"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = AutoConfig.from_pretrained(source)
    text = getattr(config, "text_config", None) or config
    for field in ("num_attention_heads", "num_key_value_heads"):
        heads = getattr(text, field, None)
        if isinstance(heads, int) and heads % world:
            raise ModelLoadError(
                f"--tp: model {name!r} has {heads} {field.removeprefix('num_').replace('_', ' ')}, which"
                f" {world} ranks do not divide: use a world size that divides it"
            )


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def _check_device_map(device_map: str, device: str, tp: bool) -> None:
    """Fail in one line, before loading, when the model cannot be spread over this machine's GPUs."""
    import importlib.util

    if device_map not in DEVICE_MAPS:
        raise ModelLoadError(f"unknown --device-map {device_map!r}; choose from {', '.join(DEVICE_MAPS)}")
    if tp:
        raise ModelLoadError(
            "--device-map and --tp: shard over torchrun's ranks or over one process's GPUs, not both"
        )
    if device not in ("auto", "cuda"):
        raise ModelLoadError(
            f"--device-map spreads the model over the GPUs; it does not go with --device {device}"
        )
    gpus = torch.cuda.device_count()
    if gpus < 2:
        raise ModelLoadError(
            f"--device-map spreads the model over several GPUs, and this machine has {gpus}: use --device"
        )
    if importlib.util.find_spec("accelerate") is None:
        raise ModelLoadError("--device-map loads through accelerate: pip install 'llmprof[dist]'")


def _tensor_parallel_kwargs() -> dict[str, Any]:
    """from_pretrained's arguments for tp_plan='auto': a DistributedConfig where transformers has one (5.x),
    the tp_plan argument before it."""
    import transformers

    config = getattr(transformers, "DistributedConfig", None)
    return {"tp_plan": "auto"} if config is None else {"distributed_config": config(tp_plan="auto")}


def _check_hub(repo: str) -> None:
    """A hub id that is not in the local cache needs the hub: fail at once, in one line, when it cannot be
    reached (rather than after a minute of retries)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(repo, "config.json"), str):
            return
    except ValueError as exc:  # not a valid repo id
        raise ModelLoadError(f"model {repo!r} is neither a local directory nor a hub id: {exc}") from None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelLoadError(f"model {repo!r} is not in the local cache, and HF_HUB_OFFLINE is set")
    host = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        raise ModelLoadError(
            f"model {repo!r} is not in the local cache and {host} cannot be reached ({exc.strerror or exc})"
        ) from None
