"""The vLLM profiler's own cost: ``llm.generate`` wall time profiled / bare, interleaved in one process on one
engine (the demo model served by vLLM's CPU build), 8 concurrent requests; the median of the pairs' ratios, and
an A/A control (bare / bare) from the same interleaving. Needs vLLM (the CI's vLLM stage installs it).

    VLLM_CPU_KVCACHE_SPACE=1 python benchmarks/bench_vllm_overhead.py [--pairs 30] [--requests 8] [--tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams, TokensPrompt

    from llmprof.capture.vllm_engine import VllmProfiler
    from llmprof.workloads.demo import demo_path

    llm = LLM(model=str(demo_path()), dtype="float32", max_num_seqs=args.requests, enforce_eager=True, seed=0)
    prompts = [
        TokensPrompt(prompt_token_ids=[(5 * i + k) % 200 + 10 for k in range(32)])
        for i in range(args.requests)
    ]
    params = SamplingParams(max_tokens=args.tokens, ignore_eos=True, temperature=0.0)
    profiler = VllmProfiler(llm, telemetry=False)

    def wall(profiled: bool) -> float:
        if profiled:
            profiler.attach()
        try:
            start = time.perf_counter()
            llm.generate(prompts, params, use_tqdm=False)
            return time.perf_counter() - start
        finally:
            if profiled:
                profiler.detach()

    for _ in range(3):  # warm-up
        wall(False)
        wall(True)
    ratios, controls, bare_s = [], [], []
    for i in range(args.pairs):  # the order alternates so that drift hits both alike
        first, second = (True, False) if i % 2 else (False, True)
        a, b = wall(first), wall(second)
        profiled, bare = (a, b) if first else (b, a)
        ratios.append(profiled / bare)
        controls.append(wall(False) / bare)
        bare_s.append(bare)
    print(
        f"{args.requests} requests x {args.tokens} tokens, {args.pairs} pairs; bare llm.generate median"
        f" {statistics.median(bare_s) * 1e3:.1f} ms"
    )
    print(
        f"profiled / bare: median {statistics.median(ratios):.4f} (min {min(ratios):.4f}, max {max(ratios):.4f})"
    )
    print(
        f"A/A bare / bare: median {statistics.median(controls):.4f} (min {min(controls):.4f}, max {max(controls):.4f})"
    )
    steps = len(profiler.steps["begin_ns"])
    print(f"engine steps recorded: {steps} ({steps / (args.pairs + 3):.1f} a call)")


if __name__ == "__main__":
    main()
