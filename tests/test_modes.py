"""Which generate() calls are recorded, and how: a mode llmprof cannot measure step by step is passed
through with a one-line warning and records nothing; a call it can measure with a gap is kept with a flag.

CI runs this module on the transformers release pip installs today and on 4.57.x.
"""

import threading
import time
import warnings

import pytest
import torch
from tiny_models import tiny_llama
from transformers import LogitsProcessor, LogitsProcessorList

import llmprof
from llmprof.report import render
from llmprof.runfile import Run
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

GREEDY = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def prompt(batch=1, length=8):
    ids = torch.randint(3, 150, (batch, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize(
    "options",
    [{"assistant_model": "draft"}, {"prompt_lookup_num_tokens": 3}],
    ids=["draft-model", "prompt-lookup"],
)
def test_assisted_generation_is_passed_through_with_a_warning(options):
    model, inputs = tiny_llama(), prompt()
    options = {k: tiny_llama(num_hidden_layers=1) if v == "draft" else v for k, v in options.items()}
    bare = model.generate(**inputs, max_new_tokens=12, **options, **GREEDY)
    with (
        llmprof.profile(model) as prof,
        pytest.warns(UserWarning, match="assisted generation is not profiled"),
    ):
        out = model.generate(**inputs, max_new_tokens=12, **options, **GREEDY)
    assert torch.equal(bare, out) and prof.records == []


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
        # what model.compile() does: __call__ runs this instead of the hooked call
        model._compiled_call_impl = lambda *args, **kwargs: model.forward(*args, **kwargs)
        out = model.generate(**inputs, max_new_tokens=5, eos_token_id=None, **GREEDY)
        model._compiled_call_impl = None
    (raw,) = prof.records
    r = prof.requests[0]
    assert r.output_tokens == [out.shape[1] - 8] and r.tpot > 0 and r.breakdown.prefill is None
    assert raw.warnings and "no forward of the model was marked" in raw.warnings[0]
    run = Run(config={}, environment={}, records=[raw])
    assert "- warning: no forward of the model was marked" in render(run, "md")
