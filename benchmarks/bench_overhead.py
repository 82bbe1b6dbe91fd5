"""Profiler overhead on the demo model: per-token time with and without the profiler, interleaved in one process.

Per-token time of a condition = (wall(N tokens) - wall(1 token)) / (N - 1), from bare perf_counter stamps around
generate() in both conditions (the profiler's own numbers are not used, so the comparison is apples to apples).
Every generate() is forced to N tokens (min_new_tokens), conditions alternate, and medians are compared.

    python benchmarks/bench_overhead.py [--pairs 15] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from llmprof import profile
from llmprof.models import load_model


def wall(model, inputs, tokens: int) -> float:
    start = time.perf_counter()
    model.generate(
        **inputs,
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=0,
    )
    return time.perf_counter() - start


def per_token(model, inputs, tokens: int, profiled: bool) -> float:
    if not profiled:
        return (wall(model, inputs, tokens) - wall(model, inputs, 1)) / (tokens - 1)
    with profile(model):
        return (wall(model, inputs, tokens) - wall(model, inputs, 1)) / (tokens - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=128)
    args = parser.parse_args()

    loaded = load_model("demo", "cpu", "float32")
    ids = torch.randint(
        10, len(loaded.tokenizer), (1, args.prompt_len), generator=torch.Generator().manual_seed(0)
    )
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for profiled in (False, True):  # warm-up both paths
        per_token(loaded.model, inputs, 8, profiled)
    bare, prof = [], []
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        for profiled in order:
            (prof if profiled else bare).append(per_token(loaded.model, inputs, args.tokens, profiled))
    b, p = statistics.median(bare), statistics.median(prof)
    print(
        f"demo model, CPU, {torch.get_num_threads()} threads, prompt {args.prompt_len}, {args.tokens} tokens, "
        f"{args.pairs} interleaved pairs"
    )
    print(f"per-token time without profiler: median {b * 1e3:.3f} ms (min {min(bare) * 1e3:.3f})")
    print(f"per-token time with profiler:    median {p * 1e3:.3f} ms (min {min(prof) * 1e3:.3f})")
    print(f"ratio with/without: {p / b:.4f} (target <= 1.02)")


if __name__ == "__main__":
    main()
