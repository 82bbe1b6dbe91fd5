"""Which generate() calls are recorded, and how: a mode llmprof cannot measure step by step is passed
through with a one-line warning and records nothing; a call it can measure with a gap is kept with a flag.

CI runs this module on the transformers release pip installs today and on 4.57.x.
"""

import copy
import threading
import time
import warnings

import pytest
import torch
from tiny_models import (
    tiny_bart,
    tiny_blip2,
    tiny_instructblip,
    tiny_kosmos2,
    tiny_llama,
    tiny_t5,
    tiny_whisper,
)
from transformers import LogitsProcessor, LogitsProcessorList

import llmprof
from llmprof.capture.recorder import COMPILED
from llmprof.report import render
from llmprof.runfile import Run
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

GREEDY = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def prompt(batch=1, length=8):
    ids = torch.randint(3, 150, (batch, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def assisted(model, inputs, **options):
    """generate() with assisted generation, EOS never (the steps are the test's, not the random weights')."""
    processors = LogitsProcessorList([ScriptedEos([0], model.generation_config.eos_token_id)])
    return model.generate(**inputs, max_new_tokens=16, logits_processor=processors, **options, **GREEDY)


def test_a_draft_model_that_drafts_what_the_model_would_say_is_always_accepted():
    model, inputs = tiny_llama(), prompt()
    draft = copy.deepcopy(model)  # the same weights: greedy drafts are the model's own tokens
    draft.generation_config.assistant_confidence_threshold = 0.0  # always 4 drafts a step
    draft.generation_config.num_assistant_tokens = 4
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    bare = assisted(model, inputs, assistant_model=draft)
    with llmprof.profile(model) as prof:
        out = assisted(model, inputs, assistant_model=draft)
    (raw,) = prof.records
    r = prof.requests[0]
    assert torch.equal(bare, out) and r.output_tokens == [out.shape[1] - 8] == [16]
    steps = sum(label == llmprof.Label.TOKEN for label in raw.label)
    assert len(raw.tokens_per_step) == len(raw.drafted_per_step) == steps < 16  # several tokens a step
    assert raw.tokens_per_step == [5, 5, 5, 1] and raw.drafted_per_step == [4, 4, 4, 0]  # capped at 16 tokens
    assert r.acceptance_rate == 1.0 and r.tokens_per_step == pytest.approx(11 / 3)
    b = r.breakdown
    assert (
        b.first_draft > 0 and all(d is not None and d > 0 for d in b.step_draft) and len(r.itl) == steps - 1
    )
    assert r.tpot == pytest.approx(sum(r.itl) / (16 - 1))  # T_last - T_1 over the tokens, not the steps


@pytest.mark.parametrize("options", [{"assistant_model": "other"}, {"prompt_lookup_num_tokens": 3}], ids=str)
def test_assisted_generation_counts_every_token_it_appends(options):
    model, inputs = tiny_llama(), prompt()
    options = {k: tiny_llama(num_hidden_layers=1) if v == "other" else v for k, v in options.items()}
    bare = assisted(model, inputs, **options)
    with llmprof.profile(model) as prof:
        out = assisted(model, inputs, **options)
    (raw,) = prof.records
    r = prof.requests[0]
    assert torch.equal(bare, out) and r.output_tokens == [out.shape[1] - 8]
    assert sum(raw.tokens_per_step) == r.output_tokens[0] and min(raw.tokens_per_step) >= 1
    assert r.acceptance_rate is None or 0 <= r.acceptance_rate <= 1


def test_early_exit_self_speculation_marks_the_verify_forwards_and_times_the_drafts():
    model, inputs = tiny_llama(), prompt()
    bare = assisted(model, inputs, assistant_early_exit=1)
    with llmprof.profile(model) as prof:
        out = assisted(model, inputs, assistant_early_exit=1)  # drafts through a nested generate() of itself
    (raw,) = prof.records
    r = prof.requests[0]
    assert torch.equal(bare, out) and r.output_tokens == [out.shape[1] - 8]
    steps = sum(label == llmprof.Label.TOKEN for label in raw.label)
    forwards = sum(label == llmprof.Label.FORWARD_BEGIN for label in raw.label)
    assert (
        forwards == steps == len(raw.tokens_per_step)
    )  # one verify forward a step; the drafts' are not steps
    assert sum(raw.tokens_per_step) == r.output_tokens[0] and r.breakdown.first_draft > 0


class CallsGenerate(LogitsProcessor):
    """On the first step, runs a second generate() on the same model, as self-speculation does."""

    def __init__(self, model, inputs):
        self.model, self.inputs, self.done = model, inputs, False

    def __call__(self, input_ids, scores):
        if not self.done:
            self.done = True
            self.model.generate(**self.inputs, max_new_tokens=3, **GREEDY)
        return scores


def test_a_generate_nested_on_the_same_model_records_nothing():
    model, inputs = tiny_llama(), prompt()
    processors = LogitsProcessorList([CallsGenerate(model, inputs)])
    with llmprof.profile(model) as prof, pytest.warns(UserWarning, match="nested inside this one"):
        model.generate(**inputs, max_new_tokens=6, logits_processor=processors, **GREEDY)
    assert prof.records == []
    model.generate(
        **inputs, max_new_tokens=6, **GREEDY
    )  # detached: nothing recorded after, nothing left behind
    with llmprof.profile(model) as prof:
        out = model.generate(**inputs, max_new_tokens=6, eos_token_id=None, **GREEDY)
    assert [r.output_tokens for r in prof.requests] == [[out.shape[1] - 8]]  # the next call is clean


def test_generate_from_two_threads_at_once_is_never_merged():
    model = synthetic_model(prefill_ms=5.0, decode_ms=20.0)
    inputs = synthetic_prompt(1, 4)
    with llmprof.profile(model) as prof, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = threading.Thread(target=lambda: model.generate(**inputs, max_new_tokens=10))
        first.start()
        while not prof.active:  # the first call is being recorded
            time.sleep(0.001)
        model.generate(**inputs, max_new_tokens=3)  # overlaps it: passed through
        first.join()
        model.generate(**inputs, max_new_tokens=4)  # alone again: recorded
    messages = [str(w.message) for w in caught]
    assert any("another generate() of this model runs" in m for m in messages)
    assert any("another thread called generate() on the same model" in m for m in messages)
    assert [r.output_tokens for r in prof.requests] == [[4]]


def test_a_forward_the_hooks_cannot_see_keeps_the_metrics_and_flags_the_record():
    model, inputs = tiny_llama(), prompt()
    with llmprof.profile(model) as prof:
        # a call path that runs the class's forward, not the instance's (which llmprof marks)
        model._call_impl = lambda *args, **kwargs: type(model).forward(model, *args, **kwargs)
        out = model.generate(**inputs, max_new_tokens=5, eos_token_id=None, **GREEDY)
        del model._call_impl
    (raw,) = prof.records
    r = prof.requests[0]
    assert r.output_tokens == [out.shape[1] - 8] and r.tpot > 0 and r.breakdown.prefill is None
    assert raw.warnings and "no forward of the model was marked" in raw.warnings[0]
    run = Run(config={}, environment={}, records=[raw])
    assert "- warning: no forward of the model was marked" in render(run, "md")


def marked_forwards(raw):
    return sum(label == llmprof.Label.FORWARD_BEGIN for label in raw.label)


def test_a_torch_compile_wrapper_is_profiled_through_the_module_it_wraps():
    model, inputs = tiny_llama(), prompt()
    compiled = torch.compile(model, backend="eager")
    compiled.generate(
        **inputs, max_new_tokens=2, **GREEDY
    )  # torch's and transformers' own first-use attributes
    before = sorted(model.__dict__)
    with llmprof.profile(compiled) as prof:
        out = compiled.generate(**inputs, max_new_tokens=5, eos_token_id=None, **GREEDY)
    (raw,) = prof.records
    assert prof.requests[0].output_tokens == [out.shape[1] - 8] and marked_forwards(raw) == 5
    assert not raw.warnings and sorted(model.__dict__) == before  # detach left the wrapped module clean
    assert "generate" not in model.__dict__ and "generate" not in compiled.__dict__


def test_model_compile_is_marked_from_outside_the_compiled_call():
    model, inputs = tiny_llama(), prompt()
    model.compile(backend="eager")
    compiled_call = model._compiled_call_impl
    with llmprof.profile(model) as prof:
        for _ in range(2):
            out = model.generate(**inputs, max_new_tokens=5, eos_token_id=None, **GREEDY)
    assert [marked_forwards(raw) for raw in prof.records] == [5, 5]  # each forward once: no doubled marks
    assert [raw.warnings for raw in prof.records] == [[COMPILED], []]  # the first call compiled its graphs
    assert prof.requests[-1].output_tokens == [out.shape[1] - 8] and prof.requests[-1].breakdown.prefill > 0
    assert model._compiled_call_impl is compiled_call  # restored on detach


class ScriptedEos(LogitsProcessor):
    """Row i emits ``eos`` at its ``at[i]``-th generated token and never before (0: never)."""

    def __init__(self, at, eos):
        self.at, self.eos, self.start = at, eos, None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[-1] if self.start is None else self.start
        step = input_ids.shape[-1] - self.start + 1  # the token this call chooses
        scores[:, self.eos] = -float("inf")
        for row, at in enumerate(self.at):
            if at == step:
                scores[row, :] = -float("inf")
                scores[row, self.eos] = 0.0
        return scores


@pytest.mark.parametrize("build", [tiny_t5, tiny_bart, tiny_whisper], ids=["t5", "bart", "whisper"])
def test_encoder_decoder_models_time_the_encoder_inside_ttft_and_count_real_tokens(build):
    model, inputs = build()
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    processors = LogitsProcessorList([ScriptedEos([0, 4], eos)])
    options = (
        {"language": "en"}
        if build is tiny_whisper
        else {"forced_bos_token_id": None, "forced_eos_token_id": None}
    )
    with llmprof.profile(model) as prof:
        model.generate(**inputs, max_new_tokens=8, logits_processor=processors, **options, **GREEDY)
    (r,) = prof.requests
    assert r.output_tokens == [8, 4]  # Whisper's output drops its 4-token decoder prompt: n_i holds anyway
    b = r.breakdown
    assert 0 < b.encoder < r.ttft and b.prefill is not None and b.host_prep >= 0
    assert len(r.itl) == 7


def test_continuous_batching_records_each_request_from_its_own_token_times():
    config = getattr(pytest.importorskip("transformers"), "ContinuousBatchingConfig", None)
    model = tiny_llama()
    if config is None or not callable(getattr(model, "generate_batch", None)):
        pytest.skip("this transformers has no continuous batching config")
    from transformers import GenerationConfig

    prompts = [[1, 5, 9, 13], [1, 3]]
    with llmprof.profile(model) as prof:
        outputs = model.generate_batch(
            prompts,
            generation_config=GenerationConfig(max_new_tokens=4, eos_token_id=2),
            continuous_batching_config=config(num_blocks=16, max_batch_tokens=64),
            warmup=False,
        )
    assert len(prof.records) == len(outputs) == 2
    by_prompt = {r.prompt_tokens: r for r in prof.requests}
    for output in outputs.values():
        r = by_prompt[len(output.prompt_ids)]
        assert r.output_tokens == [len(output.generated_tokens)] and 0 < r.ttft <= r.latency
        assert output.timestamps is None  # not asked for: the caller's outputs are as they would be
    assert all(raw.warnings and "continuous batching" in raw.warnings[0] for raw in prof.records)


@pytest.mark.parametrize(
    "build", [tiny_blip2, tiny_instructblip, tiny_kosmos2], ids=["blip2", "instructblip", "kosmos2"]
)
def test_a_generate_that_hands_its_loop_to_a_language_model_is_one_request(build):
    model, inputs = build()
    before = snapshot(model)
    processors = LogitsProcessorList([ScriptedEos([0, 4], 2)])
    with llmprof.profile(model) as prof:
        out = model.generate(**inputs, max_new_tokens=8, logits_processor=processors, **GREEDY)
    assert snapshot(model) == before  # detached from both models
    (r,) = prof.requests
    assert r.output_tokens == [8, 4] and out.shape[1] == inputs["input_ids"].shape[1] + 8
    b = (
        r.breakdown
    )  # the image path (vision tower, Q-former) inside TTFT, before the language model's prefill
    assert 0 < b.vision < r.ttft and b.prefill is not None and len(r.itl) == 7


def snapshot(model):
    """What a profiler could leave behind on a model and its submodules."""
    return [
        (name, sorted(m.__dict__), list(m._forward_hooks), list(m._forward_pre_hooks))
        for name, m in model.named_modules()
    ]
