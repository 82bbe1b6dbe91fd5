"""Hooks on a HF model: a ``generate()`` wrapper, forward pre/post hooks, the vision encoder's hooks, and a
stopping-criteria list that marks each step's token (DESIGN.md section 2).

Nothing here reads a device tensor's value (that would synchronize): the hooks only stamp the timeline.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch
from transformers import StoppingCriteriaList

from llmprof.record import Label

VISION_MODULE_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_encoder")
_PATCHED_ATTRIBUTES = ("generate", "_get_stopping_criteria")


class Recorder(Protocol):
    """What the hooks report to (implemented by :class:`llmprof.profiler.Profiler`)."""

    active: bool
    steps: int  # tokens appended so far in the active request

    def mark(self, label: int, step: int) -> None: ...
    def begin(self, args: tuple, kwargs: dict) -> None: ...
    def on_token(self, is_done: torch.Tensor) -> None: ...
    def end(self, output: Any) -> None: ...
    def abort(self) -> None: ...


class TokenMarkingCriteria(StoppingCriteriaList):
    """The stopping-criteria list generate() built, plus a mark of ``T_k`` after each step's tokens are appended.

    generate() calls it exactly once per step; it keeps each step's ``is_done`` flags (a device tensor, never
    read here) so the real token count of every sequence is known after the call.
    """

    def __init__(self, criteria: StoppingCriteriaList, recorder: Recorder):
        super().__init__(criteria)
        self._recorder = recorder

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        is_done = super().__call__(input_ids, scores, **kwargs)
        if self._recorder.active:
            self._recorder.on_token(is_done)
        return is_done


def unsupported_generation(model: Any, kwargs: dict) -> str | None:
    """Why this generate() call cannot be profiled step by step (None when it can): only greedy and sampling can."""
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    num_beams = kwargs.get("num_beams", getattr(config, "num_beams", 1)) or 1
    if num_beams > 1:
        return "beam search"
    if kwargs.get("assistant_model") is not None or kwargs.get("prompt_lookup_num_tokens"):
        return "assisted generation"
    return None


def find_vision_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The vision encoder of a vision-language model (LLaVA's vision_tower, Qwen2-VL's visual, ...), if any."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_MODULE_NAMES:
            return module
    return None


class InstalledHooks:
    """Hooks installed on one model; :meth:`remove` restores the model exactly as it was."""

    def __init__(self, model: torch.nn.Module, recorder: Recorder):
        self._model = model
        self._saved = {name: model.__dict__[name] for name in _PATCHED_ATTRIBUTES if name in model.__dict__}
        mark = recorder.mark

        def forward_begin(_module: Any, _args: Any) -> None:
            if recorder.active:
                mark(Label.FORWARD_BEGIN, recorder.steps)

        def forward_end(_module: Any, _args: Any, _output: Any) -> None:
            if recorder.active:
                mark(Label.FORWARD_END, recorder.steps)

        def vision_begin(_module: Any, _args: Any) -> None:
            if recorder.active:
                mark(Label.VISION_BEGIN, recorder.steps)

        def vision_end(_module: Any, _args: Any, _output: Any) -> None:
            if recorder.active:
                mark(Label.VISION_END, recorder.steps)

        self._handles = [model.register_forward_pre_hook(forward_begin), model.register_forward_hook(forward_end)]
        vision = find_vision_module(model)
        if vision is not None:
            self._handles += [vision.register_forward_pre_hook(vision_begin), vision.register_forward_hook(vision_end)]
        model.generate = _wrap_generate(model, model.generate, recorder)
        model._get_stopping_criteria = _wrap_stopping_criteria(model._get_stopping_criteria, recorder)

    def remove(self) -> None:
        """Remove every hook and wrapper."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for name in _PATCHED_ATTRIBUTES:
            if name in self._saved:
                setattr(self._model, name, self._saved[name])
            else:
                self._model.__dict__.pop(name, None)


def _wrap_generate(model: Any, generate: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    @functools.wraps(generate)
    def profiled_generate(*args: Any, **kwargs: Any) -> Any:
        if recorder.active:  # a generate() inside generate() (e.g. an assistant model) is part of the outer request
            return generate(*args, **kwargs)
        reason = unsupported_generation(model, kwargs)
        if reason is not None:
            warnings.warn(f"llmprof: {reason} is not profiled (only greedy and sampling are); call left untouched")
            return generate(*args, **kwargs)
        recorder.begin(args, kwargs)
        try:
            output = generate(*args, **kwargs)
        except BaseException:
            recorder.abort()
            raise
        recorder.end(output)
        return output

    return profiled_generate


def _wrap_stopping_criteria(get_criteria: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    @functools.wraps(get_criteria)
    def marking_criteria(*args: Any, **kwargs: Any) -> StoppingCriteriaList:
        return TokenMarkingCriteria(get_criteria(*args, **kwargs), recorder)

    return marking_criteria
