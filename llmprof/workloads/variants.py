"""Kernel swaps without editing code: attention implementation, torch.compile, dtype, a user patch and a decode
loop of one's own, as variants of one loaded model that can be switched between calls (for A/B runs)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from llmprof.errors import UsageError, VariantError, first_line
from llmprof.imports import import_user_module
from llmprof.workloads.models import DTYPE_ALIASES, DTYPES
from llmprof.workloads.spec import ENGINES, Loaded, engine_argument

KEYS = ("attn", "compile", "dtype", "patch", "loop", "engine", "engine-arg")
SWEPT = ("attn", "compile", "dtype", "patch")  # a sweep's kernel-swap axes
GENERATE = "generate"  # loop=generate: the model's generate(), as without a loop


def load_function(spec: str, flag: str | None = None) -> Callable[[Any], Any]:
    """The function named ``module:function``, the module looked up in the current folder first
    (:func:`llmprof.imports.import_user_module`). ``flag``: how the user wrote it, for the messages (default
    ``--patch SPEC``)."""
    flag = flag or f"--patch {spec}"
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise VariantError(f"{flag}: expected module:function")
    try:
        module = import_user_module(module_name, flag)
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - an import error of any kind is the user's to fix
        raise VariantError(
            f"{flag}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise VariantError(f"{flag}: module {module_name!r} has no function {function_name!r}")
    return function


def apply_patch(model: Any, spec: str, flag: str | None = None) -> None:
    """Call the user's patch function once with ``model`` (to install a kernel, replace a module, ...)."""
    flag = flag or f"--patch {spec}"
    function = load_function(spec, flag)
    try:
        function(model)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code: report it in one line
        raise VariantError(f"{flag} raised {type(exc).__name__}: {exc}") from None


def set_attention(model: Any, implementation: str) -> None:
    """Switch the attention implementation of a loaded model (eager, sdpa, flash_attention_2, ...)."""
    try:
        model.set_attn_implementation(implementation)
    except (ValueError, ImportError, AttributeError) as exc:
        raise VariantError(f"attention implementation {implementation!r}: {first_line(exc)}") from None


def compile_forward(model: Any) -> Any:
    """Replace the model's forward by its torch.compile'd version (the profiler's hooks stay outside it)."""
    model.forward = torch.compile(model.forward)
    return model.forward


@dataclass
class Variant:
    """One configuration to profile: the loaded model with some of attn, compile, dtype, patch changed, run
    through generate() or through ``loop`` (``module:function``, as ``run --loop`` takes); or another engine
    (``engine``: vllm) with its own arguments (``engine-arg=KEY=VALUE``, repeatable)."""

    name: str
    attn: str | None = None
    compile: bool = False
    dtype: str | None = None
    patch: str | None = None
    loop: str | None = None
    engine: str | None = None
    engine_args: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, name: str, items: list[str]) -> Variant:
        """From ``KEY=VALUE`` items, KEY in attn, compile (on/off), dtype, patch (module:function), loop
        (module:function, or generate)."""
        fields: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or key not in KEYS or not value:
                raise VariantError(f"variant {name}: {item!r} is not KEY=VALUE with KEY in {', '.join(KEYS)}")
            if key == "engine-arg":
                try:
                    fields["engine_args"] = (*fields.get("engine_args", ()), engine_argument(value))
                except ValueError as exc:
                    raise VariantError(f"variant {name}: engine-arg {exc}") from None
            elif key == "engine":
                if value not in ENGINES:
                    raise VariantError(f"variant {name}: engine takes {' or '.join(ENGINES)}, not {value!r}")
                fields[key] = value
            elif key == "compile":
                if value not in ("on", "off"):
                    raise VariantError(f"variant {name}: compile takes on or off, not {value!r}")
                fields[key] = value == "on"
            elif key == "dtype":
                dtype = DTYPE_ALIASES.get(value, value)
                if dtype not in DTYPES:
                    raise VariantError(
                        f"variant {name}: unknown dtype {value!r}; choose from {', '.join(DTYPES)}"
                    )
                fields[key] = dtype
            elif key == "loop":
                fields[key] = None if value == GENERATE else value
            else:
                fields[key] = value
        return cls(name=name, **fields)

    def applied_to(self, loaded: Loaded) -> Loaded:
        """What a run's config records of the loaded model under this variant: its dtype and attention, where it
        sets them."""
        return replace(
            loaded,
            dtype=self.dtype or loaded.dtype,
            attn_implementation=self.attn or loaded.attn_implementation,
        )

    @property
    def needs_own_model(self) -> bool:
        """dtype and patch change the weights or the code: such a variant runs on its own copy of the model."""
        return self.dtype is not None or self.patch is not None

    def describe(self) -> dict[str, Any]:
        """What the variant sets, for its run's config (an engine's keys only where it sets them)."""
        engine = {"engine": self.engine} if self.engine else {}
        engine |= {"engine_args": dict(self.engine_args)} if self.engine_args else {}
        return {
            "name": self.name,
            "attn": self.attn,
            "compile": self.compile,
            "dtype": self.dtype,
            "patch": self.patch,
            "loop": self.loop,
            **engine,
        }

    def label(self) -> str:
        shown = {k: v for k, v in self.describe().items() if k not in ("name", "engine_args")}
        changed = [f"{k}={v}" for k, v in shown.items() if v not in (None, False)]
        changed += [f"engine-arg={k}={v}" for k, v in self.engine_args]
        return f"{self.name} ({', '.join(changed) or 'as loaded'})"


class PreparedVariant:
    """A variant ready to run: its model instance, and :meth:`activate` to call before each of its turns."""

    def __init__(self, variant: Variant, model: Any, base_attn: str | None, compiled_forwards: set[int]):
        self.variant = variant
        self.model = model
        flag = f"--{variant.name.lower()} loop={variant.loop}"
        self.loop = load_function(variant.loop, flag) if variant.loop else None  # None: generate()
        self._attn = variant.attn or base_attn
        # set on the model per turn by activate()
        self._compiled = torch.compile(model.forward) if variant.compile else None
        # ids of every variant's compiled forward: the only forwards activate() removes
        self._ours = compiled_forwards
        if self._compiled is not None:
            compiled_forwards.add(id(self._compiled))

    def activate(self) -> None:
        """Put the shared model into this variant's state (attention implementation, compiled forward)."""
        if self._attn is not None and self.model.config._attn_implementation != self._attn:
            set_attention(self.model, self._attn)
        if self._compiled is not None:
            self.model.forward = self._compiled
        elif self._ours.intersection(_unwrapped(self.model.__dict__.get("forward"))):
            del (
                self.model.forward
            )  # a variant's compiled forward (maybe inside the profiler's), never a patch's


def _unwrapped(forward: Any, depth: int = 8) -> set[int]:
    """ids of ``forward`` and of what it wraps (``__wrapped__``, or ``fn`` of the profiler's marking call), a few
    levels deep."""
    ids = set()
    while forward is not None and depth:
        ids.add(id(forward))
        inner = getattr(forward, "__wrapped__", None)
        forward, depth = inner if inner is not None else getattr(forward, "fn", None), depth - 1
    return ids


def own_copies(variants: list[Variant]) -> list[Variant]:
    """The variants that run on a copy of the loaded model: all of them when any needs one (a dtype or a
    patch), so that no variant runs on the loaded weights against another's copy: beside a busy core the demo's
    aten::mm ran slower on a copy than on the loaded model, and the kernel diff called it changed by a patch
    that never touched it (tests/test_kernels.py, the MLP patch under a busy loop)."""
    return list(variants) if any(v.needs_own_model for v in variants) else []


def prepare(model: Any, variants: list[Variant]) -> list[PreparedVariant]:
    """Build every variant from the loaded ``model``: attn and compile switch on the model (or its copy) at
    each turn (see :meth:`PreparedVariant.activate`); the variants of :func:`own_copies` get their own copy of
    it, made here, before any turn has changed it. A patch that changes code for the whole process (an op, a
    class) rather than the model it is given reaches both variants: A/B it as two `run --patch` runs and
    `compare`."""
    base_attn = getattr(model.config, "_attn_implementation", None)
    compiled_forwards: set[int] = set()
    copied = {id(v) for v in own_copies(variants)}
    prepared = []
    for variant in variants:
        instance = model
        if id(variant) in copied:
            instance = copy.deepcopy(model)
            if variant.dtype is not None:
                instance.to(DTYPES[variant.dtype])
            if variant.patch is not None:
                apply_patch(instance, variant.patch, f"--{variant.name.lower()} patch={variant.patch}")
        prepared.append(PreparedVariant(variant, instance, base_attn, compiled_forwards))
    return prepared
