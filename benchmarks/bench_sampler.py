"""Telemetry sampler cost: the time of one sample, and TPOT and the ITL tail (p99 of the inter-token latencies)
on the demo model with the sampler on vs off, interleaved in one process (each condition attaches its own
profiler; TPOT and ITL are the profiler's own figures), at the default interval and at a fast one (--fast, 10 ms
by default: the sampler thread wakes 10x more often, so that its GIL use would show in the tail if it had any).

    python benchmarks/bench_sampler.py [--pairs 20] [--tokens 64] [--fast 0.01]
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


def tpot(
    model, inputs, tokens: int, telemetry: bool, interval: float | None = None
) -> tuple[float, list[float]]:
    """(TPOT, inter-token latencies) of one call."""
    with Profiler(model, telemetry=telemetry, sample_interval=interval) as prof:
        model.generate(**inputs, **fixed_length(tokens))
    return prof.requests[-1].tpot, prof.requests[-1].itl


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def on_off(model, inputs, tokens: int, pairs: int, interval: float | None) -> dict[str, float]:
    """Median TPOT and the pooled ITL p99, sampler off and on, over interleaved pairs."""
    tpots: dict[bool, list[float]] = {False: [], True: []}
    itls: dict[bool, list[float]] = {False: [], True: []}
    for i in range(pairs):
        for telemetry in (False, True) if i % 2 == 0 else (True, False):
            t, itl = tpot(model, inputs, tokens, telemetry, interval)
            tpots[telemetry].append(t)
            itls[telemetry].extend(itl)
    return {
        "tpot_off": statistics.median(tpots[False]),
        "tpot_on": statistics.median(tpots[True]),
        "p99_off": p99(itls[False]),
        "p99_on": p99(itls[True]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--fast", type=float, default=0.01, help="the fast sampling interval, in seconds")
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
    print(f"demo on {loaded.device}, {args.tokens} tokens, {args.pairs} interleaved pairs per interval")
    for name, interval in (("default", None), (f"{args.fast * 1e3:.0f} ms", args.fast)):
        r = on_off(loaded.model, inputs, args.tokens, args.pairs, interval)
        print(
            f"interval {name}: TPOT off {r['tpot_off'] * 1e3:.3f} ms, on {r['tpot_on'] * 1e3:.3f} ms (ratio"
            f" {r['tpot_on'] / r['tpot_off']:.4f}, target <= 1.01); ITL p99 off {r['p99_off'] * 1e3:.3f} ms,"
            f" on {r['p99_on'] * 1e3:.3f} ms (ratio {r['p99_on'] / r['p99_off']:.4f})"
        )


if __name__ == "__main__":
    main()
