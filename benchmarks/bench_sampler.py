"""Telemetry sampler cost: the time of one sample, and TPOT on the demo model with the sampler on vs off,
interleaved in one process (each condition attaches its own profiler; TPOT is the profiler's own figure).

    python benchmarks/bench_sampler.py [--pairs 20] [--tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from fixed_length import fixed_length

from llmprof import Profiler
from llmprof.capture.sampling import make_sampler
from llmprof.workloads.models import load_model


def sample_cost(samples: int = 2000) -> tuple[str, float, float]:
    """(sampler kind, median seconds per sample, default interval) of the sampler this machine gets."""
    gpus = [0] if torch.cuda.is_available() else []
    sampler = make_sampler(gpus)
    costs = []
    for _ in range(samples):
        start = time.perf_counter()
        sampler.sample_once()
        costs.append(time.perf_counter() - start)
    sampler.start()  # chooses the default interval from the probe cost
    sampler.stop()
    return sampler.kind, statistics.median(costs), sampler.interval_s


def tpot(model, inputs, tokens: int, telemetry: bool) -> float:
    with Profiler(model, telemetry=telemetry) as prof:
        model.generate(**inputs, **fixed_length(tokens))
    return prof.requests[-1].tpot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    kind, cost, interval = sample_cost()
    print(
        f"{kind} sampler: {cost * 1e6:.1f} us per sample (median of 2000), default interval {interval * 1e3:.0f} ms"
        f" -> duty cycle {cost / interval * 100:.3f}%"
    )
    loaded = load_model("demo", "auto", "auto")
    ids = torch.randint(10, len(loaded.tokenizer), (1, 128), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids.to(loaded.device), "attention_mask": torch.ones_like(ids).to(loaded.device)}
    for telemetry in (False, True):
        tpot(loaded.model, inputs, 8, telemetry)
    off, on = [], []
    for i in range(args.pairs):
        for telemetry in (False, True) if i % 2 == 0 else (True, False):
            (on if telemetry else off).append(tpot(loaded.model, inputs, args.tokens, telemetry))
    a, b = statistics.median(off), statistics.median(on)
    print(f"demo on {loaded.device}, {args.tokens} tokens, {args.pairs} interleaved pairs")
    print(f"TPOT sampler off: median {a * 1e3:.3f} ms; sampler on: median {b * 1e3:.3f} ms")
    print(f"ratio on/off: {b / a:.4f} (target <= 1.01)")


if __name__ == "__main__":
    main()
