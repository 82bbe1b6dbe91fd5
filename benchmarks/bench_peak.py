"""Cost of the peak measurement the roofline uses when the device is not in the table (always on a CPU): each
trial measures afresh (copy bandwidth, then the matmul rate) into a private cache, then reads the cached figures.

    python benchmarks/bench_peak.py [--trials 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from llmprof.capture import peak
from llmprof.workloads.models import DTYPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]

    os.environ["LLMPROF_CACHE"] = tempfile.mkdtemp(prefix="llmprof-bench-peak-")
    fresh, cached = [], []
    for _ in range(args.trials):
        fresh.append(peak.measured_peaks(device, dtype, refresh=True))
        start = time.perf_counter()
        peak.measured_peaks(device, dtype)
        cached.append(time.perf_counter() - start)
    print(f"{peak.device_name(device)}, {args.dtype}, {args.trials} trials")
    for m in fresh:
        print(f"  {m.seconds:.3f} s: {m.bandwidth / 1e9:.1f} GB/s copy, {m.flops / 1e9:.1f} GFLOP/s matmul")
    seconds = statistics.median(m.seconds for m in fresh)
    print(f"measurement: median {seconds:.3f} s (max {max(m.seconds for m in fresh):.3f} s)")
    print(f"bandwidth: median {statistics.median(m.bandwidth for m in fresh) / 1e9:.1f} GB/s")
    print(f"matmul: median {statistics.median(m.flops for m in fresh) / 1e9:.1f} GFLOP/s")
    print(f"cached read: median {statistics.median(cached) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
