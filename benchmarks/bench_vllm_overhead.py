"""The vLLM profiler's own cost, two ways, in one process (needs vLLM: CI's vLLM stage installs it):

1. ``llm.generate`` wall time profiled / bare, interleaved on one engine (the demo model served by vLLM's CPU
   build), 8 concurrent requests: the median of the pairs' ratios, and an A/A control (bare / bare) from the same
   interleaving. On a busy 2-core machine a call's wall time spreads by +-20%: this figure is coarse.
2. The load-proof figure: the wrappers' own time per engine step, timed in tight interleaved loops around a
   stand-in engine core whose methods do nothing (8 running requests, a token each a step), profiled minus bare,
   and that cost as a share of the real engine's median step from (1).

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
    steps = profiler.steps
    step_ms = statistics.median(e - b for b, e in zip(steps["begin_ns"], steps["end_ns"])) / 1e6
    print(f"engine steps recorded: {len(steps['begin_ns'])}, median step {step_ms:.2f} ms")
    cost_us = wrapper_cost_us(args.requests)
    print(
        f"wrappers' own time per step (stand-in core, {args.requests} requests): median {cost_us:.2f} us ="
        f" {cost_us / (step_ms * 1e3):.5f} of a median step: profiled / bare {1 + cost_us / (step_ms * 1e3):.4f}"
    )


def wrapper_cost_us(requests: int, steps: int = 20_000, rounds: int = 15) -> float:
    """The wrappers' time per step around a stand-in engine core whose methods do nothing: the median over
    rounds of (profiled - bare) time per step, the rounds alternating."""
    from types import SimpleNamespace as Stub

    from llmprof.capture.vllm_engine import VllmProfiler

    ids = [f"r{i}" for i in range(requests)]
    scheduled = Stub(num_scheduled_tokens=dict.fromkeys(ids, 1), scheduled_new_reqs=[])
    finished = {0: Stub(outputs=[Stub(request_id=i, new_token_ids=[7], finish_reason=None) for i in ids])}
    scheduler = Stub(
        requests={i: Stub(num_computed_tokens=100, num_prompt_tokens=32) for i in ids},
        kv_cache_manager=Stub(usage=0.5),
    )
    scheduler.schedule = lambda *a, **k: scheduled
    scheduler.update_from_output = lambda *a, **k: finished
    executor = Stub(execute_model=lambda *a, **k: None, sample_tokens=lambda *a, **k: None)
    core = Stub(scheduler=scheduler, model_executor=executor, batch_queue=None)
    core.preprocess_add_request = lambda request: (request, 0)
    core.add_request = lambda request, wave=0: None
    llm = Stub(llm_engine=Stub(engine_core=Stub(engine_core=core)))

    def timed(profiled: bool) -> float:
        profiler = VllmProfiler(llm, telemetry=False)
        if profiled:
            profiler.attach()
            for i in ids:  # the running requests, as the engine adds them
                core.preprocess_add_request(Stub(request_id=i, external_req_id=i))
                core.add_request(Stub(request_id=i, arrival_time=time.time(), num_prompt_tokens=32))
        start = time.perf_counter()
        for _ in range(steps):
            out = core.scheduler.schedule()
            core.model_executor.execute_model(out, non_block=True)
            core.model_executor.sample_tokens(None)
            core.scheduler.update_from_output(out, None)
        elapsed = time.perf_counter() - start
        if profiled:
            profiler.detach()
        return elapsed / steps

    costs = []
    for i in range(rounds):
        first = i % 2 == 0
        a, b = timed(first), timed(not first)
        profiled, bare = (a, b) if first else (b, a)
        costs.append((profiled - bare) * 1e6)
    return statistics.median(costs)


if __name__ == "__main__":
    main()
