"""Hand-written greedy loops recorded with llmprof.Recorder against generate() on the same model, interleaved
in one process. ``generate_like`` does a step's host work as generate() does it (logits copy, logits processors,
padding of finished rows, the ids and attention mask grown, the stopping criteria, whose flags it records):
its TPOT should agree with generate()'s within 2%, so a loop's numbers compare with a generate() run's.
``greedy`` is the bare minimum (forward, argmax): what generate()'s own host work costs shows as its lower TPOT.

    python benchmarks/bench_loop_vs_generate.py [--pairs 10] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import llmprof
from llmprof.workloads.models import load_model


def greedy(model, inputs: dict, recorder) -> None:
    """generate()'s greedy loop by hand: prefill, then one token a step through the KV cache (a `run --loop`
    function: ``inputs`` holds ``input_ids`` and ``max_new_tokens``)."""
    ids, new_tokens = inputs["input_ids"], inputs["max_new_tokens"]
    with torch.no_grad(), recorder.request(batch=ids.shape[0], prompt_tokens=ids.shape[1]):
        with recorder.prefill():
            result = model(input_ids=ids, use_cache=True)
        for step in range(new_tokens):
            token = result.logits[:, -1].argmax(-1, keepdim=True)
            recorder.token()
            if step < new_tokens - 1:
                with recorder.forward():
                    result = model(input_ids=token, past_key_values=result.past_key_values, use_cache=True)


def generate_like(model, inputs: dict, recorder) -> torch.Tensor:
    """generate()'s greedy loop with its per-step host work, forced to ``max_new_tokens`` (min_new_tokens); the
    stopping criteria's flags are the recorded finished flags. Returns the sequences, as generate() does."""
    from transformers import DynamicCache, LogitsProcessorList, StoppingCriteriaList
    from transformers.generation import EosTokenCriteria, MaxLengthCriteria, MinNewTokensLengthLogitsProcessor

    ids, new_tokens = inputs["input_ids"], inputs["max_new_tokens"]
    batch, prompt = ids.shape
    eos, pad = model.generation_config.eos_token_id, model.generation_config.pad_token_id or 0
    processors = LogitsProcessorList([MinNewTokensLengthLogitsProcessor(prompt, new_tokens, eos)])
    criteria = StoppingCriteriaList([MaxLengthCriteria(prompt + new_tokens), EosTokenCriteria(eos)])
    mask, unfinished = torch.ones_like(ids), torch.ones(batch, dtype=torch.long, device=ids.device)
    cache, position = DynamicCache(config=model.config), torch.arange(prompt, device=ids.device)
    with torch.no_grad(), recorder.request(batch=batch, prompt_tokens=prompt, max_steps=new_tokens):
        with recorder.prefill():
            out = model(input_ids=ids, attention_mask=mask, past_key_values=cache, cache_position=position)
        while True:
            logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
            tokens = processors(ids, logits).argmax(-1) * unfinished + pad * (1 - unfinished)
            ids = torch.cat([ids, tokens[:, None]], dim=-1)
            done = criteria(ids, None)
            recorder.token(finished=done)
            unfinished = unfinished & ~done
            if unfinished.max() == 0:
                return ids
            mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
            position = position[-1:] + 1
            with recorder.forward():
                out = model(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    past_key_values=cache,
                    cache_position=position,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    loaded = load_model("demo", "auto", "auto")
    model = loaded.model
    ids = torch.randint(4, 2000, (1, 128), generator=torch.Generator().manual_seed(0)).to(loaded.device)
    kwargs = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens, "do_sample": False}
    recorder = llmprof.Recorder.for_model(model)
    profiler = llmprof.Profiler(model, telemetry=False)
    inputs = {"input_ids": ids, "max_new_tokens": args.tokens}
    loops = {"generate_like": generate_like, "greedy": greedy}
    for _ in range(2):  # warm-up all
        for loop in loops.values():
            loop(model, inputs, recorder)
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    tpots: dict[str, list[float]] = {name: [] for name in (*loops, "generate")}
    for _ in range(args.pairs):
        for name, loop in loops.items():
            loop(model, inputs, recorder)
            tpots[name].append(recorder.requests[-1].tpot)
        with profiler:
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        tpots["generate"].append(profiler.requests[-1].tpot)
    same = torch.equal(generate_like(model, inputs, recorder), out)
    medians = {name: statistics.median(values) for name, values in tpots.items()}
    print(f"demo model on {loaded.device}, prompt 128, {args.tokens} tokens, {args.pairs} interleaved rounds")
    print(
        f"generate_like returns generate()'s sequences: {same}; tokens recorded {recorder.records[-1].tokens_per_sequence}"
    )
    for name in loops:
        print(
            f"TPOT {name}: median {medians[name] * 1e3:.3f} ms; generate() hooks {medians['generate'] * 1e3:.3f} ms;"
            f" ratio {medians[name] / medians['generate']:.4f}"
        )


if __name__ == "__main__":
    main()
