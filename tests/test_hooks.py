"""The hooks on real HF models: user kwargs keep working, token counts are exact, detach leaves no trace.

CI runs this module on the transformers release pip installs today and on 4.57.x.
"""

import pytest
import torch
from tiny_models import tiny_llama, tiny_llava, tiny_qwen2_vl
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

import llmprof
from llmprof import Profiler

GREEDY = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def prompt(batch=1, length=8, seed=0):
    ids = torch.randint(3, 150, (batch, length), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def snapshot(model):
    """Everything a profiler could leave behind on a model."""
    return (
        sorted(model.__dict__),
        [(name, list(m._forward_hooks), list(m._forward_pre_hooks)) for name, m in model.named_modules()],
        getattr(model.generate, "__func__", model.generate),
        getattr(model._get_stopping_criteria, "__func__", model._get_stopping_criteria),
    )


def expected_tokens(output, prompt_len, eos):
    """n_i from the output itself: up to and including the first EOS, else every generated token."""
    counts = []
    for row in output[:, prompt_len:].tolist():
        counts.append(row.index(eos) + 1 if eos in row else len(row))
    return counts


@pytest.mark.parametrize("build", [lambda: (tiny_llama(), prompt()), tiny_llava], ids=["llama", "llava"])
def test_detach_restores_the_model_exactly(build):
    model, inputs = build()
    model.generate(
        **inputs, max_new_tokens=2, **GREEDY
    )  # transformers installs hooks of its own on first use
    before = snapshot(model)
    with llmprof.profile(model) as prof:
        assert snapshot(model) != before
        model.generate(**inputs, max_new_tokens=3, **GREEDY)
    assert snapshot(model) == before
    model.generate(**inputs, max_new_tokens=3, **GREEDY)
    assert len(prof.requests) == 1  # nothing recorded after detach


def test_output_is_unchanged_by_profiling():
    model, inputs = tiny_llama(), prompt(batch=2)
    bare = model.generate(**inputs, max_new_tokens=6, **GREEDY)
    with llmprof.profile(model):
        profiled = model.generate(**inputs, max_new_tokens=6, **GREEDY)
    assert torch.equal(bare, profiled)


def test_eos_in_a_batch_counts_real_tokens_not_padding():
    model, inputs = tiny_llama(), prompt(batch=3, seed=1)
    free = model.generate(**inputs, max_new_tokens=8, **GREEDY)
    eos = int(free[0, 8 + 2])  # make row 0's third token the EOS
    with llmprof.profile(model) as prof:
        out = model.generate(**inputs, max_new_tokens=8, eos_token_id=eos, pad_token_id=0, **GREEDY)
    r = prof.requests[-1]
    assert r.output_tokens == expected_tokens(out, 8, eos)
    assert r.output_tokens[0] <= 3 and out.shape[1] == 8 + max(r.output_tokens)


class CountingProcessor(LogitsProcessor):
    def __init__(self):
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        return scores


class StopAfter(StoppingCriteria):
    def __init__(self, length):
        self.length = length

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.length, dtype=torch.bool)


class CollectingStreamer(BaseStreamer):
    def __init__(self):
        self.chunks = []

    def put(self, value):
        self.chunks.append(value.tolist())

    def end(self):
        self.chunks.append("end")


def test_user_processors_criteria_and_streamer_keep_working():
    model, inputs = tiny_llama(), prompt()
    processor, streamer = CountingProcessor(), CollectingStreamer()
    with llmprof.profile(model) as prof:
        out = model.generate(
            **inputs,
            max_new_tokens=10,
            eos_token_id=None,
            logits_processor=LogitsProcessorList([processor]),
            stopping_criteria=StoppingCriteriaList([StopAfter(8 + 4)]),
            streamer=streamer,
            **GREEDY,
        )
    assert out.shape[1] == 12 and prof.requests[-1].output_tokens == [4]
    assert processor.calls == 4
    assert streamer.chunks[-1] == "end" and len(streamer.chunks) == 1 + 1 + 4  # prompt, 4 tokens, end


def test_sampling_and_dict_output():
    model, inputs = tiny_llama(), prompt(batch=2)
    torch.manual_seed(3)
    with llmprof.profile(model) as prof:
        out = model.generate(
            **inputs,
            max_new_tokens=12,
            do_sample=True,
            top_k=0,
            eos_token_id=5,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_scores=True,
        )
    r = prof.requests[-1]
    assert r.output_tokens == expected_tokens(out.sequences, 8, 5)
    assert len(out.scores) == max(r.output_tokens)


def test_profiling_twice_in_a_row_and_misuse():
    model, inputs = tiny_llama(), prompt()
    with llmprof.profile(model) as first:
        model.generate(**inputs, max_new_tokens=3, **GREEDY)
    with llmprof.profile(model) as second:
        model.generate(**inputs, max_new_tokens=3, **GREEDY)
        model.generate(**inputs, max_new_tokens=4, **GREEDY)
        with pytest.raises(RuntimeError, match="already attached to this model"):
            Profiler(model).attach()
        with pytest.raises(RuntimeError, match="this Profiler is already attached"):
            second.attach()
    assert len(first.requests) == 1 and [r.output_tokens for r in second.requests] == [[3], [4]]
    second.detach()  # detaching twice is harmless
    assert first.records[0].prompt_tokens == 8


@pytest.mark.parametrize("not_a_model", [object(), torch.nn.Linear(2, 2)])
def test_objects_without_generate_are_refused(not_a_model):
    with pytest.raises(TypeError, match="generate"):
        Profiler(not_a_model)


def test_a_failing_generate_leaves_the_profiler_usable():
    model, inputs = tiny_llama(), prompt()
    with llmprof.profile(model) as prof:
        with pytest.raises(ValueError):
            model.generate(
                **inputs, max_new_tokens=3, num_return_sequences=2, **GREEDY
            )  # needs sampling or beams
        model.generate(**inputs, max_new_tokens=3, **GREEDY)
    assert len(prof.requests) == 1 and not prof.active


def test_beam_search_is_left_untouched_with_a_warning():
    model, inputs = tiny_llama(), prompt()
    bare = model.generate(**inputs, max_new_tokens=4, num_beams=2, **GREEDY)
    with llmprof.profile(model) as prof, pytest.warns(UserWarning, match="beam search is not profiled"):
        out = model.generate(**inputs, max_new_tokens=4, num_beams=2, **GREEDY)
    assert torch.equal(bare, out) and prof.requests == []


@pytest.mark.parametrize("build", [tiny_llava, tiny_qwen2_vl], ids=["llava", "qwen2-vl"])
def test_vision_language_models_report_the_vision_encoder(build):
    model, inputs = build()
    with llmprof.profile(model) as prof:
        out = model.generate(**inputs, max_new_tokens=5, eos_token_id=None, **GREEDY)
    r = prof.requests[-1]
    assert r.output_tokens == [5] and out.shape[1] == inputs["input_ids"].shape[1] + 5
    b = r.breakdown
    assert b.vision > 0 and b.prefill > 0 and b.host_prep >= 0


def test_stop_strings_count_tokens_up_to_the_stop():
    from llmprof.workloads.demo import train_demo_tokenizer

    tokenizer = train_demo_tokenizer()
    model, inputs = tiny_llama(vocab_size=len(tokenizer)), prompt(batch=2, seed=4)
    free = model.generate(**inputs, max_new_tokens=12, eos_token_id=None, **GREEDY)[0, 8:].tolist()
    stop = next(tokenizer.decode([t]) for t in free[2:] if tokenizer.decode([t]).strip())
    with llmprof.profile(model) as prof:
        out = model.generate(
            **inputs,
            max_new_tokens=12,
            eos_token_id=tokenizer.eos_token_id,
            stop_strings=[stop],
            pad_token_id=0,
            tokenizer=tokenizer,
            **GREEDY,
        )  # with an EOS, finished rows are padded
    n = prof.requests[-1].output_tokens
    row = out[0, 8:].tolist()
    assert stop in tokenizer.decode(row[: n[0]]) and stop not in tokenizer.decode(row[: n[0] - 1])
    assert n[0] < n[1] == out.shape[1] - 8  # row 0 stopped early; the rest of it is padding
    assert row[n[0] :] == [0] * (len(row) - n[0])


def test_beam_search_from_a_positional_or_default_config_is_not_recorded():
    from transformers import GenerationConfig

    model, inputs = tiny_llama(), prompt()
    config = GenerationConfig(num_beams=2, max_new_tokens=4, do_sample=False)
    with llmprof.profile(model) as prof, pytest.warns(UserWarning, match="beam search"):
        model.generate(inputs["input_ids"], config)
    model.generation_config.num_beams = 2
    with llmprof.profile(model) as prof, pytest.warns(UserWarning, match="beam search"):
        model.generate(**inputs, max_new_tokens=4, **GREEDY)
    assert prof.requests == []


def test_positional_config_sizes_the_timeline():
    from transformers import GenerationConfig

    from llmprof import _core

    model, inputs = tiny_llama(), prompt()
    config = GenerationConfig(max_new_tokens=300, min_new_tokens=300, do_sample=False, pad_token_id=0)
    with llmprof.Profiler(model, timeline=_core.Timeline(8)) as prof:
        model.generate(inputs["input_ids"], config)
    assert prof.requests[-1].output_tokens == [300]


def test_inputs_embeds_and_encoder_decoder_token_counts():
    from transformers import T5Config, T5ForConditionalGeneration

    model, inputs = tiny_llama(), prompt(batch=2)
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with llmprof.profile(model) as prof:
        out = model.generate(
            inputs_embeds=embeds,
            attention_mask=inputs["attention_mask"],
            max_new_tokens=9,
            eos_token_id=None,
            **GREEDY,
        )
    assert out.shape[1] == 9 and prof.requests[-1].output_tokens == [9, 9]
    t5 = T5ForConditionalGeneration(
        T5Config(
            vocab_size=64,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
        )
    ).eval()
    with llmprof.profile(t5) as prof:
        out = t5.generate(
            input_ids=torch.randint(2, 60, (1, 7)), max_new_tokens=10, eos_token_id=None, **GREEDY
        )
    assert out.shape[1] == 11 and prof.requests[-1].output_tokens == [10]  # decoder start token + 10


class SlowCriterion(StoppingCriteria):
    def __call__(self, input_ids, scores, **kwargs):
        import time

        time.sleep(0.02)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def test_token_is_stamped_before_the_stopping_criteria_run():
    model, inputs = tiny_llama(), prompt()
    with llmprof.profile(model) as prof:
        model.generate(
            **inputs, max_new_tokens=4, stopping_criteria=StoppingCriteriaList([SlowCriterion()]), **GREEDY
        )
    b = prof.requests[-1].breakdown
    assert b.first_sample < 0.01 and b.sampling < 0.01  # the 20 ms criterion is not token time
    assert b.host_gap >= 0.02  # it is loop time between a token and the next forward


def test_prefill_throughput_counts_real_prompt_tokens():
    model, inputs = tiny_llama(), prompt(batch=2)
    inputs["attention_mask"][1, :3] = 0  # row 1 is left-padded: 5 real tokens
    with llmprof.profile(model) as prof:
        model.generate(**inputs, max_new_tokens=2, do_sample=True, num_return_sequences=3, pad_token_id=0)
    r, raw = prof.requests[-1], prof.records[-1]
    assert r.batch_size == 6 and raw.prefill_tokens == 8 + 5
    assert r.prefill_tps == pytest.approx(13 / r.ttft)


def test_compiled_forward_is_marked_from_outside_without_graph_breaks():
    from transformers import CompileConfig

    model, inputs = tiny_llama(), prompt()
    compile_config = CompileConfig(backend="eager", fullgraph=True)  # fullgraph: a mark inside would raise
    compile_config._compile_all_devices = True  # compile on CPU too
    with llmprof.profile(model) as prof:
        model.generate(
            **inputs,
            max_new_tokens=5,
            eos_token_id=None,
            cache_implementation="static",
            compile_config=compile_config,
            **GREEDY,
        )
    assert hasattr(model, "_compiled_call")  # generate() really used the compiled forward
    raw = prof.records[-1]
    decode_begins = [
        s for label, s in zip(raw.label, raw.step) if label == llmprof.Label.FORWARD_BEGIN and s > 0
    ]
    assert decode_begins == [1, 2, 3, 4]  # exactly one forward span per decode step
    assert all(f is not None and f > 0 for f in prof.requests[-1].breakdown.step_forward)


def test_chunked_prefill_is_one_prefill_span():
    model = tiny_llama(hidden_size=256, intermediate_size=512, num_hidden_layers=4)
    inputs = prompt(length=256)
    model.generate(**inputs, max_new_tokens=2, **GREEDY)  # warm-up
    with llmprof.profile(model) as prof:
        model.generate(**inputs, max_new_tokens=3, prefill_chunk_size=32, **GREEDY)
    r = prof.requests[-1]
    assert r.breakdown.prefill > 0.5 * r.ttft  # the chunks are in the prefill span, not in host prep
