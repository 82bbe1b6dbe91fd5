"""Telemetry memory over a long run: an hour of sampling at 5 ms on a fake clock (no sleeping: the sampler's
own bounding rule is what is measured), two GPUs' rows of NVML's fields per probe, a request of 10 s starting
every minute. Prints, at 10, 30 and 60 minutes, the probes taken, the probes kept, the stride and the memory
the kept series hold (tracemalloc), against what keeping every probe would hold (the rate of the first 10
minutes, unbounded).

    python benchmarks/bench_telemetry_bound.py [--minutes 60] [--interval-ms 5]
"""

from __future__ import annotations

import argparse
import random
import tracemalloc
from types import SimpleNamespace

from llmprof.capture.sampling import base
from llmprof.capture.sampling.base import Sampler


class TwoGpus(Sampler):
    """NVML's polled fields for two GPUs, random values: what the NVML sampler appends per probe."""

    kind = "fake-nvml"

    def probe(self):
        return [
            {
                "device": device,
                "gpu_util": random.randrange(101),
                "mem_util": random.randrange(101),
                "mem_used_bytes": random.randrange(1 << 34),
                "sm_clock_mhz": 1980,
                "mem_clock_mhz": 2619,
                "power_w": random.random() * 700,
                "temperature_c": 60,
                "clock_event_reasons": 0,
            }
            for device in ("0", "1")
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    args = parser.parse_args()
    clock = SimpleNamespace(t=10**12)
    base.time = SimpleNamespace(monotonic_ns=lambda: clock.t)  # the fake clock the sampler stamps with
    tick = round(args.interval_ms * 1e6)
    minute, request = 60_000_000_000, 10_000_000_000
    sampler = TwoGpus(interval_s=args.interval_ms / 1e3)
    tracemalloc.start()
    ticks = args.minutes * minute // tick
    checkpoints = {m * minute // tick: m for m in (10, 30, 60) if m <= args.minutes}
    print(f"{'minutes':>8} {'taken':>9} {'kept':>8} {'stride':>7} {'MB kept':>8} {'MB unbounded':>13}")
    per_probe = None
    begin = None
    for i in range(1, ticks + 1):
        clock.t += tick
        phase = (i * tick) % minute
        if phase == tick:
            begin = sampler.begin_request()
        elif phase == request + tick and begin is not None:
            sampler.end_request(begin, request / 1e9)
        sampler.sample_once()
        if i in checkpoints:
            held = tracemalloc.get_traced_memory()[0] / 1e6
            per_probe = per_probe or held / sampler.probes  # before any thinning: the unbounded rate
            print(
                f"{checkpoints[i]:>8} {i:>9} {sampler.probes:>8} {sampler.stride:>7} {held:>8.1f}"
                f" {per_probe * i:>13.1f}"
            )


if __name__ == "__main__":
    main()
