"""The examples' decode loops (examples/): what they generate, what they record, and through the CLI (`run --loop`,
`ab` with a loop variant) against the same model's generate()."""

import sys
from pathlib import Path

import pytest
import torch
from run_cli import run_in_process
from tiny_models import tiny_llama

import llmprof
from llmprof.cli import main
from llmprof.runfile import load_run
from llmprof.workloads.variants import Variant, prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples import custom_kernel_loop, gpt_fast_loop

PROMPT = torch.randint(3, 150, (2, 6), generator=torch.Generator().manual_seed(0))


def test_the_static_cache_loop_generates_what_generate_does_and_records_every_token():
    model, recorder = tiny_llama(), llmprof.Recorder()
    tokens = gpt_fast_loop.greedy_static(
        model, {"input_ids": PROMPT, "max_new_tokens": 7}, recorder, compiled=False
    )
    out = model.generate(
        input_ids=PROMPT,
        attention_mask=torch.ones_like(PROMPT),
        max_new_tokens=7,
        min_new_tokens=7,
        do_sample=False,
    )
    assert torch.equal(tokens, out[:, PROMPT.shape[1] :])
    (raw,) = recorder.records
    assert raw.tokens_per_sequence == [7, 7] and raw.prompt_tokens == 6
    assert raw.label.count(llmprof.Label.FORWARD_BEGIN) == 7 and recorder.requests[0].tpot > 0


def test_the_custom_kernel_replaces_every_rms_norm_and_computes_the_same():
    model = tiny_llama()
    before = model(input_ids=PROMPT).logits
    assert custom_kernel_loop.install(model) == 2 * model.config.num_hidden_layers + 1
    assert torch.allclose(model(input_ids=PROMPT).logits, before, atol=1e-5)
    recorder = llmprof.Recorder()
    custom_kernel_loop.decode(model, {"input_ids": PROMPT, "max_new_tokens": 3}, recorder)
    assert recorder.records[0].tokens_per_sequence == [3, 3]


def test_the_custom_kernel_loop_refuses_a_model_without_the_kernel():
    with pytest.raises(RuntimeError, match="--patch examples.custom_kernel_loop:install"):
        custom_kernel_loop.decode(
            tiny_llama(), {"input_ids": PROMPT, "max_new_tokens": 2}, llmprof.Recorder()
        )


def test_ab_runs_a_loop_variant_against_generate_interleaved(tmp_path, capsys, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    monkeypatch.chdir(ROOT)
    result = run_in_process(
        capsys, "ab", "--b", "loop=examples.gpt_fast_loop:decode_eager", "--repeats", "4", "--max-new-tokens",
        "6", "--prompt-len", "16", "--no-telemetry", "--json-a", str(a), "--json-b", str(b), "--format", "md",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "B (loop=examples.gpt_fast_loop:decode_eager) against A" in result.stdout
    # generate() prepares its inputs before the prefill, the loop does not: no "220x faster" host prep
    host_prep = next(line for line in result.stdout.splitlines() if line.startswith("| host prep"))
    assert host_prep.endswith("| not comparable: generate() against a loop |") and "faster" not in host_prep
    runs = load_run(a), load_run(b)
    assert runs[1].config["loop"] == "examples.gpt_fast_loop:decode_eager" and runs[0].config["loop"] is None
    assert all(r.tokens_per_sequence == [6] for run in runs for r in run.measured)
    # the two alternated
    starts = sorted(
        [(r.host_ns[0], "A") for r in runs[0].measured] + [(r.host_ns[0], "B") for r in runs[1].measured]
    )
    assert "".join(name for _, name in starts) == "AB" * 4


def test_a_loop_that_cannot_be_imported_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["ab", "--b", "loop=examples.nothing:here"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--b loop=examples.nothing:here" in lines[0]


def test_loop_generate_is_the_generate_path():
    assert Variant.parse("A", ["loop=generate"]).loop is None
    assert Variant.parse("B", ["loop=m:f"]).describe()["loop"] == "m:f"


def test_a_variant_turn_takes_its_compiled_forward_back_out_of_the_profilers_wrapper():
    model = tiny_llama()
    plain, compiled = prepare(model, [Variant("A"), Variant("B", compile=True)])
    with llmprof.profile(model, telemetry=False) as prof:
        compiled.activate()
        prof._hooks.follow_forward()  # what each generate() does: the marking call now wraps B's compiled forward
        assert model.forward.fn is compiled._compiled
        plain.activate()
        prof._hooks.follow_forward()
        assert model.forward.fn == type(model).forward.__get__(model)  # A runs the model's own forward


def test_when_one_variant_needs_a_copy_of_the_model_every_variant_runs_on_one():
    model = tiny_llama()
    same = prepare(model, [Variant("A"), Variant("B", attn="eager")])
    assert all(p.model is model for p in same)  # attn switches on the loaded model
    plain, other = prepare(model, [Variant("A"), Variant("B", dtype="float32")])
    assert plain.model is not model and other.model is not model and plain.model is not other.model
