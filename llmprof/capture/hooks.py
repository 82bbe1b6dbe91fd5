"""Hooks on a HF model, one client of the :class:`~llmprof.capture.recorder.Recorder`: a ``generate()`` wrapper,
the model's ``forward`` replaced on the instance by a compiled marking call (no ``nn.Module`` hook: torch keeps
its fast call path), the vision encoder's hooks, and a stopping-criteria list that marks each step's token and
keeps its finished flags (docs/architecture.md, "Where the timeline comes from").

Per decode step the hooks make two calls into the extension (the marked forward, the criteria list's call) and
no Python call of their own; nothing here reads a device tensor's value (that would synchronize).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch
from transformers import GenerationMixin, StoppingCriteriaList

from llmprof._core import install_marking_call
from llmprof.analysis.record import Label

VISION_MODULE_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_encoder")
# the rest of the image path that a delegating generate() runs before its language model (timed as vision)
IMAGE_PATH_NAMES = ("qformer",)
INNER_LANGUAGE_MODELS = ("language_model", "text_model")  # a delegating generate()'s inner model
_PATCHED_ATTRIBUTES = (
    "generate",
    "_get_stopping_criteria",
    "get_compiled_call",
    "generate_batch",
    "_get_candidate_generator",
)
REQUIRED_METHODS = ("generate", "_get_stopping_criteria")


class HookClient(Protocol):
    """What the hooks report to (implemented by :class:`llmprof.capture.profiler.Profiler`). The per-step
    calls go straight to ``timeline``, the compiled timeline of the client's recorder."""

    timeline: Any
    active: bool  # a call is being recorded
    speculative: bool  # ... and it is assisted generation: a step may append several tokens
    marking: TokenMarkingCriteria | None  # the call's token-marking criteria, once built

    def enter(self) -> bool: ...
    def leave(self) -> None: ...
    def begin(self, arguments: dict[str, Any]) -> None: ...
    def configure(self, generation_config: Any) -> bool: ...
    def on_draft(self, length: int, drafted: int) -> None: ...
    def drafting(self, running: bool) -> None: ...
    def add_batch(self, outputs: dict[str, Any]) -> None: ...
    def end(self, output: Any) -> None: ...
    def abort(self) -> None: ...


class TokenMarkingCriteria(StoppingCriteriaList):
    """The stopping-criteria list generate() built, plus a mark of ``T_k`` as soon as step k's tokens are appended.

    generate() calls it exactly once per step, right after appending the tokens: the mark is taken before the
    criteria run (their own time is not token time), and their ``is_done`` flags are then copied into the
    timeline's buffer (no sync, no tensor kept), so the real token count of every sequence is known after the
    call. ``start_length``: the sequences' length before the first token. Its ``__call__`` is the extension's
    (``install_marking_call``, below): no Python frame per step.
    """

    def __init__(self, criteria: StoppingCriteriaList, timeline: Any):
        super().__init__(criteria)
        self._timeline = timeline
        self.start_length: int | None = None


install_marking_call(TokenMarkingCriteria, StoppingCriteriaList.__call__)


class SpeculativeMarkingCriteria(TokenMarkingCriteria):
    """The token-marking list for assisted generation: a step appends the accepted draft tokens and one of the
    model's own, so each step's sequence length is kept too (``lengths``). transformers 4.x also calls the
    criteria on the unverified candidates, before the verify forward: that call is no step."""

    def __init__(self, criteria: StoppingCriteriaList, timeline: Any):
        super().__init__(criteria, timeline)
        self.lengths: list[int] = []

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if sys._getframe(1).f_locals.get("candidate_input_ids") is input_ids:
            return StoppingCriteriaList.__call__(self, input_ids, scores, **kwargs)
        is_done = super().__call__(input_ids, scores, **kwargs)
        if self._timeline.armed:
            self.lengths.append(input_ids.shape[-1])
        return is_done


def call_arguments(signature: inspect.Signature | None, args: tuple, kwargs: dict) -> dict[str, Any]:
    """generate()'s arguments by name, positional ones included (a model's own generate() may take ``*args``)."""
    flat = dict(kwargs)
    if signature is None:
        if args:
            flat.setdefault("inputs", args[0])
        return flat
    try:
        bound = signature.bind_partial(*args, **kwargs).arguments
    except TypeError:  # let generate() itself report the bad call
        return flat
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            flat.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                flat.setdefault("inputs", value[0])
        else:
            flat[name] = value
    return flat


def loop_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose generation loop a generate() of ``model`` runs: the model itself, or the inner language
    model that its own generate() hands the loop to after the image path (BLIP-2, InstructBLIP, Kosmos-2)."""
    if getattr(type(model), "generate", None) is GenerationMixin.generate:
        return model
    for name in INNER_LANGUAGE_MODELS:
        inner = getattr(model, name, None)
        if (
            isinstance(inner, GenerationMixin)
            and inner is not model
            and callable(inner._get_stopping_criteria)
        ):
            return inner
    return model


def find_encoder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The encoder of an encoder-decoder model (T5, BART, Whisper), which generate() runs once before the loop."""
    config = getattr(model, "config", None)
    get = getattr(model, "get_encoder", None)
    if not getattr(config, "is_encoder_decoder", False) or not callable(get):
        return None
    try:
        encoder = get()
    except (AttributeError, NotImplementedError):
        return None
    return encoder if isinstance(encoder, torch.nn.Module) and encoder is not model else None


def find_vision_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The vision encoder of a vision-language model (LLaVA's vision_tower, Qwen2-VL's visual, ...), if any."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_MODULE_NAMES:
            return module
    return None


class InstalledHooks:
    """Hooks installed on one model; :meth:`remove` restores the model exactly as it was.

    A compiled forward (the one generate() asks for, or ``model.compile()``'s) is marked from outside, and runs
    with the model's own ``forward`` in place, so that torch.compile traces that and never the marking call.
    """

    def __init__(self, model: torch.nn.Module, recorder: HookClient):
        loop = loop_model(model)  # the model, or the inner language model its generate() hands the loop to
        self._models = [model] if loop is model else [model, loop]
        self._saved = [
            {name: m.__dict__[name] for name in _PATCHED_ATTRIBUTES if name in m.__dict__}
            for m in self._models
        ]
        timeline = recorder.timeline
        compiling = torch.compiler.is_compiling

        def span_marker(label: Label) -> Callable[..., None]:
            """An encoder's mark: at any time of a recorded call (an encoder runs once, before the loop)."""

            def hook(*_args: Any) -> None:
                if not compiling() and recorder.active:
                    timeline.mark(label, timeline.step)

            return hook

        self._loop, self._recorder, self._timeline = loop, recorder, timeline
        self._timed: Any = None  # the marking call installed as the loop model's forward
        self._inner: Any = None  # ... what it calls: the instance's own forward attribute (None: its class's)
        self._compiled_call: tuple[Callable[..., Any], Callable[..., Any]] | None = None  # (original, marked)
        self._handles = []
        image_path = [find_vision_module(model)] + [getattr(model, name, None) for name in IMAGE_PATH_NAMES]
        spans = [
            (m, Label.VISION_BEGIN, Label.VISION_END) for m in image_path if isinstance(m, torch.nn.Module)
        ]
        spans.append((find_encoder(loop), Label.ENCODER_BEGIN, Label.ENCODER_END))
        for module, begin, end in spans:
            if module is not None:
                self._handles += [
                    module.register_forward_pre_hook(span_marker(begin)),
                    module.register_forward_hook(span_marker(end)),
                ]
        self.follow_forward()
        model.generate = _wrap_generate(model.generate, recorder, self.follow)
        loop._get_stopping_criteria = _wrap_stopping_criteria(loop._get_stopping_criteria, recorder)
        if callable(getattr(loop, "get_compiled_call", None)):
            loop.get_compiled_call = _wrap_compiled_call(loop.get_compiled_call, self.compiled)
        if callable(getattr(loop, "_get_candidate_generator", None)):
            loop._get_candidate_generator = _wrap_candidate_generator(loop._get_candidate_generator, recorder)
        if callable(getattr(model, "generate_batch", None)):
            model.generate_batch = _wrap_generate_batch(model.generate_batch, recorder)

    def follow(self) -> None:
        """At every generate(): mark the forward in place now, which may have changed since attach."""
        self.follow_forward()
        self.follow_compile()

    def follow_forward(self) -> None:
        """Install the marking call as the loop model's ``forward``, around whatever is its forward now (the
        class's, an accelerate hook's, or one the user assigned since)."""
        loop = self._loop
        current = loop.__dict__.get("forward")
        if current is not None and current is self._timed:
            return
        inner = current if current is not None else loop.forward
        timed = self._timeline.timed(inner)
        _look_like(timed, inner)
        loop.__dict__["forward"] = timed
        self._timed, self._inner = timed, current

    def follow_compile(self) -> None:
        """Mark from outside the forward that ``model.compile()`` installed (``_compiled_call_impl``: hooks
        inside it are traced no-ops); checked at every generate(), since it may come after attach."""
        current = self._loop.__dict__.get("_compiled_call_impl")
        if current is None or (self._compiled_call is not None and current is self._compiled_call[1]):
            return
        self._restore_compiled_call()
        marked = self.compiled(current)
        self._loop._compiled_call_impl = marked
        self._compiled_call = (current, marked)

    def compiled(self, forward: Callable[..., Any]) -> Callable[..., Any]:
        """A compiled ``forward`` marked as one span, run with the model's own forward in place of the marking
        call (torch.compile traces the model's forward, never the extension)."""
        attributes, hooks = self._loop.__dict__, self

        @functools.wraps(forward)
        def unmarked_inside(*args: Any, **kwargs: Any) -> Any:
            timed, inner = attributes.get("forward"), hooks._inner
            if inner is None:
                attributes.pop("forward", None)
            else:
                attributes["forward"] = inner
            try:
                return forward(*args, **kwargs)
            finally:
                if timed is not None:
                    attributes["forward"] = timed

        return self._timeline.timed(unmarked_inside)

    def _restore_compiled_call(self) -> None:
        if self._compiled_call is not None:
            original, marked = self._compiled_call
            if self._loop.__dict__.get("_compiled_call_impl") is marked:
                self._loop._compiled_call_impl = original
            self._compiled_call = None

    def remove(self) -> None:
        """Remove every hook and wrapper."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._restore_compiled_call()
        attributes = self._loop.__dict__
        if attributes.get("forward") is self._timed:  # else replaced since the last call: left as it is
            if self._inner is None:
                del attributes["forward"]
            else:
                attributes["forward"] = self._inner
        for model, saved in zip(self._models, self._saved):
            for name in _PATCHED_ATTRIBUTES:
                if name in saved:
                    setattr(model, name, saved[name])
                else:
                    model.__dict__.pop(name, None)


def _look_like(wrapper: Any, wrapped: Callable[..., Any]) -> None:
    """Give ``wrapper`` the name, docs and signature of ``wrapped``. The signature is computed once and set as
    ``__signature__``: transformers 4.x asks ``inspect.signature(self.forward)`` at every step, which then costs
    no more than for the model's own bound method."""
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError):
            setattr(wrapper, name, getattr(wrapped, name))
    try:  # no __wrapped__ then: inspect would call a stop-check per step (what is inside is wrapper.fn)
        wrapper.__signature__ = inspect.signature(wrapped)
    except (TypeError, ValueError):  # no signature to copy: let inspect find the wrapped callable's
        wrapper.__wrapped__ = wrapped


def _wrap_generate(
    generate: Callable[..., Any], recorder: HookClient, on_enter: Callable[[], None]
) -> Callable[..., Any]:
    try:
        signature: inspect.Signature | None = inspect.signature(generate)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(generate)
    def profiled_generate(*args: Any, **kwargs: Any) -> Any:
        try:
            if not recorder.enter():  # another generate() of this model is running: pass this one through
                return generate(*args, **kwargs)
            on_enter()
            recorder.begin(call_arguments(signature, args, kwargs))
            try:
                output = generate(*args, **kwargs)
            except BaseException:
                recorder.abort()
                raise
            recorder.end(output)
            return output
        finally:
            recorder.leave()

    return profiled_generate


def _wrap_stopping_criteria(get_criteria: Callable[..., Any], recorder: HookClient) -> Callable[..., Any]:
    """generate() builds its criteria from the final, merged generation config: the place to decide whether the
    call can be profiled, and to hand back the token-marking list."""

    @functools.wraps(get_criteria)
    def marking_criteria(*args: Any, **kwargs: Any) -> StoppingCriteriaList:
        criteria = get_criteria(*args, **kwargs)
        config = kwargs.get("generation_config", args[0] if args else None)
        if recorder.active and recorder.configure(config):
            marking = SpeculativeMarkingCriteria if recorder.speculative else TokenMarkingCriteria
            recorder.marking = marking(criteria, recorder.timeline)
            return recorder.marking
        return criteria

    return marking_criteria


def _wrap_compiled_call(
    get_compiled_call: Callable[..., Any], marked: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Callable[..., Any]:
    """Mark around the compiled forward generate() asks for, since marks inside it are skipped."""

    @functools.wraps(get_compiled_call)
    def marked_compiled_call(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        return marked(get_compiled_call(*args, **kwargs))

    return marked_compiled_call


def _wrap_candidate_generator(get_generator: Callable[..., Any], recorder: HookClient) -> Callable[..., Any]:
    """Assisted generation's candidate generator, with each draft (a draft model's tokens, prompt-lookup
    n-grams) marked as a span and its size kept (shapes only: no device value is read)."""
    timeline = recorder.timeline

    @functools.wraps(get_generator)
    def marked_generator(*args: Any, **kwargs: Any) -> Any:
        generator = get_generator(*args, **kwargs)
        get_candidates = generator.get_candidates

        @functools.wraps(get_candidates)
        def drafted(input_ids: torch.LongTensor, *rest: Any, **options: Any) -> Any:
            if not timeline.armed:
                return get_candidates(input_ids, *rest, **options)
            timeline.mark(Label.DRAFT_BEGIN, timeline.step)
            recorder.drafting(True)
            try:
                candidates = get_candidates(input_ids, *rest, **options)
            finally:
                recorder.drafting(False)
            if timeline.armed:
                timeline.mark(Label.DRAFT_END, timeline.step)
                recorder.on_draft(input_ids.shape[-1], candidates[0].shape[-1] - input_ids.shape[-1])
            return candidates

        generator.get_candidates = drafted
        return generator

    return marked_generator


def _wrap_generate_batch(generate_batch: Callable[..., Any], recorder: HookClient) -> Callable[..., Any]:
    """Continuous batching: every request of the batch recorded from the token times transformers stamps
    itself (``record_timestamps``); where it cannot stamp them, passed through with a warning."""
    try:
        stamps = "record_timestamps" in inspect.signature(generate_batch).parameters
    except (TypeError, ValueError):
        stamps = False

    @functools.wraps(generate_batch)
    def profiled_batch(*args: Any, **kwargs: Any) -> Any:
        if not stamps:
            warnings.warn(
                "llmprof: continuous batching (generate_batch) is not profiled with this transformers (it stamps"
                " no token times); the call is not recorded",
                stacklevel=2,
            )
            return generate_batch(*args, **kwargs)
        asked = kwargs.get("record_timestamps", False)
        outputs = generate_batch(*args, **{**kwargs, "record_timestamps": True})
        recorder.add_batch(outputs)
        if not asked:  # the caller's outputs as they would be
            for output in outputs.values():
                output.timestamps = None
        return outputs

    return profiled_batch
