"""A hand-written greedy loop recorded with llmprof.Recorder against generate() on the same model, interleaved
in one process: the two TPOTs should agree (the loop does what generate() does, less its logits processors and
stopping criteria), so a loop's numbers compare with a generate() run's.

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
    for _ in range(2):  # warm-up both
        greedy(model, inputs, recorder)
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    loop, hooked = [], []
    for _ in range(args.pairs):
        greedy(model, inputs, recorder)
        loop.append(recorder.requests[-1].tpot)
        with profiler:
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        hooked.append(profiler.requests[-1].tpot)
    a, b = statistics.median(loop), statistics.median(hooked)
    print(f"demo model on {loaded.device}, prompt 128, {args.tokens} tokens, {args.pairs} interleaved pairs")
    print(f"TPOT, Recorder loop: median {a * 1e3:.3f} ms; generate() hooks: median {b * 1e3:.3f} ms")
    print(f"loop / generate(): {a / b:.4f} (goal: within 2%)")


if __name__ == "__main__":
    main()
