"""Profiler overhead on the demo model: per-token time with and without the profiler, interleaved in one process.

Per-token time of a condition = (wall(N tokens) - wall(1 token)) / (N - 1), from bare perf_counter stamps around
generate() in both conditions (the profiler's own numbers are not used, so the comparison is apples to apples).
Every generate() is forced to N tokens (min_new_tokens), conditions alternate, and medians are compared.
The same on the synthetic model with a 0 ms forward gives the profiler's absolute cost per decode step.

    python benchmarks/bench_overhead.py [--pairs 15] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from fixed_length import fixed_length

from llmprof import profile
from llmprof.workloads.models import load_model
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt


def wall(model, inputs, tokens: int) -> float:
    start = time.perf_counter()
    model.generate(**inputs, **fixed_length(tokens))
    return time.perf_counter() - start


def per_token(model, inputs, tokens: int, profiled: bool) -> float:
    if not profiled:
        return (wall(model, inputs, tokens) - wall(model, inputs, 1)) / (tokens - 1)
    with profile(model):
        return (wall(model, inputs, tokens) - wall(model, inputs, 1)) / (tokens - 1)


def compare(model, inputs, tokens: int, pairs: int) -> tuple[list[float], list[float]]:
    """Per-token times (bare, profiled) over interleaved pairs, after a warm-up of both paths."""
    for profiled in (False, True):
        per_token(model, inputs, 8, profiled)
    bare, prof = [], []
    for i in range(pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        for profiled in order:
            (prof if profiled else bare).append(per_token(model, inputs, tokens, profiled))
    return bare, prof


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
    bare, prof = compare(loaded.model, inputs, args.tokens, args.pairs)
    b, p = statistics.median(bare), statistics.median(prof)
    print(
        f"demo model, CPU, {torch.get_num_threads()} threads, prompt {args.prompt_len}, {args.tokens} tokens, "
        f"{args.pairs} interleaved pairs"
    )
    print(f"per-token time without profiler: median {b * 1e3:.3f} ms (min {min(bare) * 1e3:.3f})")
    print(f"per-token time with profiler:    median {p * 1e3:.3f} ms (min {min(prof) * 1e3:.3f})")
    print(f"ratio with/without: {p / b:.4f} (target <= 1.02)")
    bare, prof = compare(
        synthetic_model(prefill_ms=0.0, decode_ms=0.0), synthetic_prompt(1, 16), 200, args.pairs
    )
    b, p = statistics.median(bare), statistics.median(prof)
    print(
        f"synthetic 0 ms forward: per-step loop {b * 1e6:.1f} us bare, {p * 1e6:.1f} us profiled: "
        f"the profiler adds {(p - b) * 1e6:.1f} us per decode step"
    )


if __name__ == "__main__":
    main()
