"""The keys of a run's config, declared once (docs/architecture.md, "The run file"): each key's type, its label in
comparisons, whether two runs compared must agree on it (a setup key) and whether every point of a sweep shares
it. :meth:`llmprof.workloads.spec.WorkloadSpec.to_config` writes a config through :func:`config_of`; compare, the
report header, the plot titles and the sweep read it through this table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

UNKNOWN = (
    "?"  # a key that a run (a Recorder's, an older file) does not hold, where a title must name something
)


@dataclass(frozen=True)
class ConfigKey:
    """One key of a run's config: ``kind`` the types its value takes (None allowed where ``optional``);
    ``label`` how comparisons name it; ``setup``: two runs that differ on it measured different things (a reason
    to doubt a comparison's verdict); ``shared``: a sweep's points (and the sweep it resumes) all hold the
    command line's value; ``variant``: an A/B variant sets it (ab's --a/--b)."""

    name: str
    kind: tuple[type, ...]
    label: str
    setup: bool = False
    shared: bool = False
    variant: bool = False
    optional: bool = False


def _key(name: str, kind: type | tuple[type, ...], label: str = "", **flags: bool) -> ConfigKey:
    return ConfigKey(name, kind if isinstance(kind, tuple) else (kind,), label or name, **flags)


# in the order of a comparison's setup differences (the first reason to doubt first), then the rest
KEYS = (
    _key("model", str, setup=True, shared=True),
    _key("dtype", str, setup=True, shared=True, variant=True),
    _key("prompt_tokens", int, "prompt length", setup=True),
    _key("batch_size", int, "batch size", setup=True),
    _key("max_new_tokens", int, "max new tokens", setup=True),
    _key("do_sample", bool, "sampling", setup=True, shared=True),
    _key("ignore_eos", bool, "ignore EOS", setup=True, shared=True),
    _key("attn_implementation", str, "attn", setup=True, shared=True, variant=True, optional=True),
    _key("compile", bool, setup=True, variant=True),
    _key("patch", str, setup=True, variant=True, optional=True),
    _key("loop", str, setup=True, variant=True, optional=True),
    _key("device", str, setup=True, shared=True),
    _key("engine", str, setup=True, shared=True, variant=True),  # written for an engine other than generate()
    _key("engine_args", dict, "engine arguments", setup=True, shared=True, variant=True),
    _key(
        "request_rate", float, "request rate", setup=True, shared=True
    ),  # requests/s, seeded Poisson arrivals
    _key("device_map", str),
    _key("prompt", str, shared=True, optional=True),
    _key("tokenize_s", float, "tokenization time", optional=True),
    _key("repeats", int, shared=True),
    _key("warmup", (int, str), "warm-up calls asked", shared=True, optional=True),
    _key("warmup_calls", int, "warm-up calls made"),
    _key("repeats_made", int, "measured calls made"),  # an engine's: its requests are not its repeats
    _key("seed", int, shared=True),
    _key("depth", int, "context depth"),
    _key("variant", dict),
    _key("sweep_point", dict, "sweep point"),
    _key("tp", bool, "tensor parallel"),
    _key("world_size", int, "ranks"),
    _key("dist_backend", str, "distributed backend"),
)
BY_NAME = {key.name: key for key in KEYS}
SETUP = tuple(key for key in KEYS if key.setup)
SHARED = tuple(key.name for key in KEYS if key.shared)
VARIANT = tuple(key.name for key in KEYS if key.variant)


def config_of(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A run's config from ``(name, value)`` pairs, in their order; raises KeyError for a key not declared here
    and TypeError for a value of another type (the writer's mistake, never the user's)."""
    config = {}
    for name, value in items:
        key = BY_NAME[name]
        fits = isinstance(value, key.kind) or (float in key.kind and type(value) is int)
        if not (fits or (value is None and key.optional)):
            raise TypeError(f"config {name}: {type(value).__name__} {value!r} is not {key.kind}")
        config[name] = value
    return config


def value(config: dict[str, Any], name: str, default: Any = None) -> Any:
    """The value of the declared key ``name`` in ``config``, ``default`` where the run does not hold it; raises
    KeyError for a key not declared here (a reader's typo)."""
    if name not in BY_NAME:
        raise KeyError(f"config key {name!r} is not declared in llmprof.analysis.config_keys")
    return config.get(name, default)


def shown(config: dict[str, Any], name: str) -> Any:
    """The value of the declared key ``name`` in ``config`` for a title, ``?`` where the run does not hold it."""
    return value(config, name, UNKNOWN)
