"""The public recording API for a decode loop of one's own: a hand-written greedy loop, a speculative loop, the
synthetic ground truth, misuse, and run files that report and compare as any other."""

import statistics
import time

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama

import llmprof
from llmprof import Label
from llmprof.cli import main
from llmprof.errors import CaptureError
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

NS = 1e-9


def greedy_loop(model, ids, new_tokens, rec, eos=2):
    """A hand-written greedy decode loop with a KV cache, recorded through the API; the generated ids."""
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    out = []
    with torch.no_grad(), rec.request(batch=ids.shape[0], prompt_tokens=ids.shape[1]):
        with rec.prefill():
            result = model(input_ids=ids, use_cache=True)
        past = result.past_key_values
        token = result.logits[:, -1].argmax(-1)
        for step in range(new_tokens):
            token = torch.where(done, torch.full_like(token, eos), token)  # padding after EOS
            out.append(token)
            done = done | (token == eos)
            rec.token(finished=done)
            if step == new_tokens - 1 or bool(done.all()):
                break
            with rec.forward():
                result = model(input_ids=token[:, None], past_key_values=past, use_cache=True)
            past = result.past_key_values
            token = result.logits[:, -1].argmax(-1)
    return torch.stack(out, dim=1)


def test_a_hand_written_greedy_loop_counts_what_it_generated_as_generate_does():
    model = tiny_llama()
    ids = torch.randint(3, 150, (2, 8), generator=torch.Generator().manual_seed(0))
    rec = llmprof.Recorder.for_model(model)
    generated = greedy_loop(model, ids, 12, rec)
    expected = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False, eos_token_id=2
    )[:, 8:]
    assert torch.equal(generated, expected[:, : generated.shape[1]])  # the same tokens as generate()
    r = rec.requests[-1]
    lengths = [(row.tolist().index(2) + 1) if 2 in row.tolist() else len(row) for row in generated]
    assert r.output_tokens == lengths and r.breakdown.prefill > 0 and len(r.itl) == generated.shape[1] - 1


def test_every_stamp_through_the_api_lies_between_the_forwards_that_bracket_it():
    model = synthetic_model(prefill_ms=20.0, decode_ms=8.0)
    inputs = synthetic_prompt(1, 4)["input_ids"]
    rec = llmprof.Recorder()
    before = time.perf_counter_ns()
    with rec.request(batch=1, prompt_tokens=4):
        with rec.prefill():
            model(inputs)
        rec.token()
        for _ in range(5):
            with rec.forward():
                model(inputs[:, -1:])
            rec.token()
    after = time.perf_counter_ns()
    raw, r = rec.records[-1], rec.requests[-1]
    log = [(start, end) for start, end, _ in model.forward_log]
    tokens = [raw.times[i] for k, i in sorted(raw.marks.first(Label.TOKEN).items())]
    for k, t in enumerate(tokens):  # T_k after the forward that made it, before the next one
        assert log[k][1] <= t <= (log[k + 1][0] if k + 1 < len(log) else after)
    assert before <= raw.window[0] <= log[0][0] and r.output_tokens == [6]
    assert (log[-1][1] - log[1][0]) * NS / 5 <= r.tpot <= (after - log[0][1]) * NS / 5
    # each forward span brackets the model's own forward, within its step (ground truth of the same call)
    inside = statistics.fmean(end - start for start, end in log[1:]) * NS
    assert inside <= r.breakdown.decode_forward <= statistics.fmean(r.itl)


def test_a_speculative_loop_counts_real_tokens_and_tpot_over_them():
    rec = llmprof.Recorder()
    steps = [1, 3, 2, 1, 3]  # tokens each verify step appended
    with rec.request(batch=2, prompt_tokens=5):
        with rec.prefill():
            time.sleep(0.002)
        rec.token(finished=[False, False], tokens=steps[0])
        for i, count in enumerate(steps[1:], 1):
            with rec.forward():
                time.sleep(0.001)
            rec.token(finished=[i >= 2, False], tokens=count)  # the first sequence is done after step 3
    raw, r = rec.records[-1], rec.requests[-1]
    assert raw.tokens_per_step == steps and r.output_tokens == [6, 10]
    t1 = raw.times[raw.marks.first(Label.TOKEN)[1]]
    last_first = raw.times[raw.marks.first(Label.TOKEN)[3]]  # its 6th token came at step 3
    assert r.tpot_per_sequence[0] == pytest.approx((last_first - t1) * NS / 5)
    assert r.tokens_per_step == pytest.approx(9 / 4)


def test_misuse_is_an_error_not_a_wrong_number():
    rec = llmprof.Recorder()
    with pytest.raises(CaptureError, match="token\\(\\) outside a request"):
        rec.token()
    with pytest.raises(CaptureError, match="inside a request"), rec.request(), rec.request():
        pass
    with pytest.raises(CaptureError, match="token\\(\\) inside a forward"), rec.request(), rec.forward():
        rec.token()
    with pytest.raises(CaptureError, match="prefill\\(\\) after the first token"), rec.request():
        rec.token()
        with rec.prefill():
            pass
    with pytest.raises(CaptureError, match="recorded no token"), rec.request():
        pass
    with pytest.raises(CaptureError, match="at some steps only"), rec.request(batch=2):
        rec.token(finished=[False, False])
        rec.token()
    with pytest.raises(CaptureError, match="one flag per sequence"), rec.request(batch=2):
        rec.token(finished=[True])
    with (
        pytest.raises(CaptureError, match="bool tensor \\(one byte a flag\\), got torch.float32"),
        rec.request(),
    ):
        rec.token(finished=torch.zeros(1))
    with pytest.raises(CaptureError, match="not given at every step \\(step 2\\)"), rec.request():
        rec.token()
        rec.token(finished=[True])
    with pytest.raises(CaptureError, match="more than it reserved"), rec.request(max_steps=2):
        for _ in range(3):
            rec.token()
    forgotten = rec.forward()
    with pytest.raises(CaptureError, match="token\\(\\) inside a forward"), rec.request():
        forgotten.__enter__()  # a forward block never exited
        rec.token()
    assert rec.records == []  # nothing recorded by any of them
    with rec.request():
        rec.token()
    assert len(rec.records) == 1  # and the recorder still works


@pytest.mark.parametrize(
    "request_kwargs, tokens, message",
    [
        (
            {},
            2**31,
            r"tokens: a step appends an int of 1 to 1048576 tokens, got 2147483648",
        ),  # was int32 wrap
        ({}, 2**70, r"got 1180591620717411303424"),
        ({}, True, r"got True"),
        ({}, 1.5, r"got 1.5"),
        ({"batch": 0}, 1, r"batch must be an int from 1 to 1048576, got 0"),
        ({"prompt_tokens": 2**40}, 1, r"prompt_tokens must be an int from 0 to 2147483647"),
        ({"max_steps": 2**31}, 1, r"max_steps must be an int from 1 to 16777216"),  # reserved before t0
        ({"prefill_tokens": -1}, 1, r"prefill_tokens must be an int from 0"),
        ({"batch": 2.0}, 1, r"batch must be an int"),
    ],
)
def test_counts_are_checked_where_they_enter(request_kwargs, tokens, message):
    rec = llmprof.Recorder()
    with pytest.raises(CaptureError, match=message), rec.request(**request_kwargs):
        rec.token(tokens=tokens)
    assert rec.records == []
    with rec.request(batch=np.int64(2), prompt_tokens=np.int32(4)):  # numpy ints are ints
        rec.token(tokens=np.int64(3))
    assert rec.records[0].tokens_per_sequence == [3, 3] and rec.records[0].prompt_tokens == 4


def test_a_config_with_a_nan_is_refused_at_save_not_at_load(tmp_path):
    rec = llmprof.Recorder()
    with rec.request():
        rec.token()
    with pytest.raises(CaptureError, match=r"config\['tries'\]\[1\] is not a finite number"):
        rec.save(str(tmp_path / "run.json"), config={"tries": [1.0, float("nan")]})
    assert not (tmp_path / "run.json").exists()
    with pytest.raises(CaptureError, match=r"config.batch_size: 64, but requests\[0\] has batch 1"):
        rec.save(str(tmp_path / "run.json"), config={"batch_size": 64})  # loadable files only
    assert not (tmp_path / "run.json").exists()


def test_a_recorded_loop_saves_a_run_that_reports_and_compares_with_a_generate_run(tmp_path):
    model = tiny_llama()
    ids = torch.randint(3, 150, (1, 8), generator=torch.Generator().manual_seed(1))
    rec = llmprof.Recorder.for_model(model)
    for _ in range(2):
        greedy_loop(model, ids, 6, rec)
    loop, generated = tmp_path / "loop.json", tmp_path / "generate.json"
    rec.save(str(loop), config={"model": "tiny-llama", "batch_size": 1})
    with llmprof.profile(model, telemetry=False) as prof:
        for _ in range(2):
            model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
            )
    from llmprof.runfile import Run, save_run

    save_run(
        Run(config={"model": "tiny-llama", "batch_size": 1}, environment={}, records=prof.records), generated
    )
    for fmt in ("table", "md", "csv", "json", "trace"):
        assert main(["report", str(loop), "--format", fmt, "-o", str(tmp_path / f"out.{fmt}")]) == 0
    assert main(["compare", str(generated), str(loop), "--format", "md", "-o", str(tmp_path / "ab.md")]) == 0
    assert "| TPOT (ms) |" in (tmp_path / "ab.md").read_text()


def test_a_recorder_runs_header_says_what_for_model_and_request_were_told(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    model = tiny_llama()
    ids = torch.randint(3, 150, (2, 8), generator=torch.Generator().manual_seed(1))
    rec = llmprof.Recorder.for_model(model)
    greedy_loop(model, ids, 4, rec, eos=-1)  # no EOS: 4 tokens per sequence
    rec.save(str(tmp_path / "run.json"))
    assert main(["report", str(tmp_path / "run.json")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == (
        "model LlamaForCausalLM on cpu (float32, timeline: host) | batch 2 | prompt 8 tok | output 4 tok/seq | "
        "1 repeats after 0 warm-up"
    )
    bare = llmprof.Recorder()  # nothing told but the device; the user's config still wins
    greedy_loop(model, ids[:1], 3, bare, eos=-1)
    bare.save(str(tmp_path / "bare.json"), config={"model": "mine"})
    assert main(["report", str(tmp_path / "bare.json")]) == 0
    assert capsys.readouterr().out.startswith("model mine on cpu (timeline: host) | batch 1 | prompt 8 tok |")


def test_a_call_after_torch_compile_gave_up_for_its_recompile_limit_says_so():
    import torch._dynamo

    from llmprof.capture.recorder import RECOMPILE_LIMIT

    step = torch.compile(lambda x: x * 3 - 1, backend="eager", dynamic=False)
    rec = llmprof.Recorder()
    with torch._dynamo.config.patch(recompile_limit=2):
        for shape in (1, 2, 3, 3):  # the third shape is one recompile too many: eager from then on
            with rec.request():
                with rec.prefill():
                    step(torch.ones(shape))
                rec.token()
    assert [RECOMPILE_LIMIT in r.warnings for r in rec.records] == [False, False, True, True]
    later = llmprof.Recorder()  # a limit hit before a recorder began is not its requests' concern
    with later.request():
        later.token()
    assert later.records[0].warnings == []


def test_a_call_that_compiles_new_graphs_says_its_times_include_compiling(tmp_path, capsys):
    model = synthetic_model(prefill_ms=1.0, decode_ms=1.0)
    step = torch.compile(lambda x: x * 2 + 1, backend="eager")  # dynamo without inductor: fast, counted
    rec = llmprof.Recorder.for_model(model)
    for shape in (4, 4, 5):  # a new shape compiles again
        with rec.request(prompt_tokens=4):
            with rec.prefill():
                step(torch.ones(shape))
            rec.token()
    assert [bool(r.warnings) for r in rec.records] == [True, False, True]
    assert rec.records[0].warnings[0].startswith("torch.compile compiled new graphs during the call")
    with llmprof.profile(model) as prof:  # through the generate() hooks too
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=2)
        step(torch.ones(6))
        model.generate(**synthetic_prompt(1, 4), max_new_tokens=2)
    assert [r.warnings for r in prof.records] == [[], []]  # compiling between calls is not in their times
    rec.save(str(tmp_path / "run.json"))
    assert main(["report", str(tmp_path / "run.json")]) == 0
    assert "warning: torch.compile compiled new graphs during the call" in capsys.readouterr().out
