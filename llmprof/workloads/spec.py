"""What gets measured, as one typed value (docs/architecture.md, "The workload"): the model and where it runs, the
prompts, the generation, the variant settings and the repeats. The CLI parses its options into a
:class:`WorkloadSpec` once; a sweep point is ``dataclasses.replace(spec, **point)``; :meth:`WorkloadSpec.to_config`
is the only writer of a run's config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.config_keys import config_of

DEFAULT_PROMPT_LEN = 128
# transformers' generate() (or the user's decode loop on a transformers model: ``loop``); vLLM's engine in this process
ENGINES = ("hf", "vllm")


def engine_argument(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--engine-arg``: the value read as JSON where it is (``8``, ``true``, ``{"a": 1}``),
    else as text; raises ValueError for no ``=`` or no key."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise ValueError(f"expected KEY=VALUE with KEY an argument of vllm.LLM, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


@dataclass(frozen=True)
class Loaded:
    """What loading and building the inputs found out, for the config: the device and dtype the model is on,
    its attention implementation, the prompt's length and its tokenization time (None: synthetic ids)."""

    device: str
    dtype: str
    attn_implementation: str | None
    prompt_tokens: int
    tokenize_s: float | None


@dataclass(frozen=True)
class WorkloadSpec:
    """One workload: ``prompt`` text or a synthetic prompt of ``prompt_len`` ids (default 128); ``depth`` tokens
    already in the KV cache before it (a sweep's); ``warmup`` None: until steady; ``attn_implementation``,
    ``compile``, ``patch`` and ``loop`` the kernel-swap settings (``loop``: the user's decode loop instead of
    generate()); ``engine``: ``hf`` (transformers) or ``vllm``, built with ``engine_args``."""

    model: str = "demo"
    engine: str = "hf"
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str | None = None
    device_map: str | None = None
    tp: bool = False
    prompt: str | None = None
    prompt_len: int | None = None
    batch_size: int = 1
    max_new_tokens: int = 64
    depth: int = 0
    do_sample: bool = False
    ignore_eos: bool = False
    seed: int = 0
    memory_check: bool = True
    repeats: int = 5
    warmup: int | None = 1
    compile: bool = False
    patch: str | None = None
    loop: str | None = None
    engine_args: tuple[tuple[str, Any], ...] = ()  # an engine's own arguments (vllm.LLM's), in order
    request_rate: float | None = (
        None  # an engine's requests arrive at this mean rate (seeded Poisson), not at once
    )

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r}: one of {', '.join(ENGINES)}")
        if self.repeats < 1 or (self.warmup is not None and self.warmup < 0):
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        if self.request_rate is not None and not self.request_rate > 0:
            raise ValueError(f"request_rate must be > 0, got {self.request_rate}")

    @property
    def prompt_length(self) -> int:
        """The synthetic prompt's length (a prompt text's is known once tokenized)."""
        return self.prompt_len or DEFAULT_PROMPT_LEN

    def shared(self) -> dict[str, Any]:
        """What every point of a sweep of this spec holds in common (the config's shared keys), as given; the
        engine's keys only for an engine other than transformers'."""
        from llmprof.analysis.config_keys import SHARED

        values = {name: getattr(self, name) for name in SHARED} | {"engine_args": dict(self.engine_args)}
        engine_only = ("engine", "engine_args", "request_rate")
        return {k: v for k, v in values.items() if self.engine != "hf" or k not in engine_only}

    def to_config(
        self,
        loaded: Loaded,
        *,
        variant: dict[str, Any] | None = None,
        sweep_point: dict[str, Any] | None = None,
        ranks: tuple[int, str] | None = None,
        warmup_calls: int | None = None,
        repeats_made: int | None = None,
    ) -> dict[str, Any]:
        """The run's config: this spec as ``loaded`` resolved it; a variant's (ab, sweep) settings and name, a
        sweep's point, the job's world size and backend (``run --tp``), and the warm-up calls made (once
        measured)."""
        settings: list[tuple[str, Any]] = []
        if sweep_point is None:  # a sweep's variant is named by "variant" alone
            settings = [("compile", self.compile), ("patch", self.patch), ("loop", self.loop)]
        engine = (
            [("engine", self.engine), ("engine_args", dict(self.engine_args))] if self.engine != "hf" else []
        )
        items = [
            ("model", self.model),
            *engine,
            *([("request_rate", self.request_rate)] if self.request_rate is not None else []),
            ("device", loaded.device),
            *([("device_map", self.device_map)] if self.device_map else []),
            ("dtype", loaded.dtype),
            ("attn_implementation", loaded.attn_implementation),
            ("batch_size", self.batch_size),
            ("prompt_tokens", loaded.prompt_tokens),
            ("prompt", self.prompt),
            ("tokenize_s", loaded.tokenize_s),
            ("max_new_tokens", self.max_new_tokens),
            ("repeats", self.repeats),
            ("warmup", "auto" if self.warmup is None else self.warmup),
            ("do_sample", self.do_sample),
            ("ignore_eos", self.ignore_eos),
            ("seed", self.seed),
            *settings,
            *([("tp", True), ("world_size", ranks[0]), ("dist_backend", ranks[1])] if ranks else []),
            *([("depth", self.depth)] if sweep_point is not None else []),
            *([("variant", variant)] if variant is not None else []),
            *([("sweep_point", sweep_point)] if sweep_point is not None else []),
            *([("warmup_calls", warmup_calls)] if warmup_calls is not None else []),
            *([("repeats_made", repeats_made)] if repeats_made is not None and self.engine != "hf" else []),
        ]
        return config_of(items)
