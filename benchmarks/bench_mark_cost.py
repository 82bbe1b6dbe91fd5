"""Host cost of one Timeline.mark() through llmprof._core, against stamping the clock from Python.

Runs in one process, interleaving blocks of each variant so that drift in machine load hits all of them, and
prints the median cost per call (ns) of each and its ratio to time.perf_counter_ns(). The numbers include the
Python loop around the call (reported alone as "empty loop").

    python benchmarks/bench_mark_cost.py [--calls N] [--blocks B]

With LLMPROF_CUDA_DRIVER set to a build of tests/fake_cuda/fake_cuda.c, it also measures mark() on the CUDA
backend (host stamp + cuEventRecord on the fake driver, i.e. the cost of the call path, not of a real driver).
"""

import argparse
import os
import statistics
import time

from llmprof import _core


def empty_loop(n: int) -> None:
    for _ in range(n):
        pass


def perf_counter(n: int) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        clock()


def perf_counter_append(n: int) -> None:
    clock = time.perf_counter_ns
    stamps: list[int] = []
    append = stamps.append
    for _ in range(n):
        append(clock())


def timeline_mark(tl: "_core.Timeline"):
    def run(n: int) -> None:
        tl.clear()
        mark = tl.mark
        for i in range(n):
            mark(1, i)
        assert tl.dropped == 0

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per block")
    parser.add_argument("--blocks", type=int, default=50, help="blocks per variant")
    args = parser.parse_args()

    variants = {
        "empty loop": empty_loop,
        "perf_counter_ns()": perf_counter,
        "list.append(perf_counter_ns())": perf_counter_append,
        "Timeline.mark() host": timeline_mark(_core.Timeline(args.calls)),
    }
    if os.environ.get(_core.DRIVER_ENV):
        tl = _core.Timeline(args.calls, device=0)
        tl.calibrate()
        variants["Timeline.mark() cuda (fake driver)"] = timeline_mark(tl)

    ns_per_call: dict[str, list[float]] = {name: [] for name in variants}
    for name, run in variants.items():  # warm-up
        run(args.calls)
    for _ in range(args.blocks):
        for name, run in variants.items():
            t0 = time.perf_counter_ns()
            run(args.calls)
            ns_per_call[name].append((time.perf_counter_ns() - t0) / args.calls)

    base = statistics.median(ns_per_call["perf_counter_ns()"])
    print(f"{args.blocks} blocks x {args.calls} calls, median ns/call (ratio to perf_counter_ns())")
    for name, samples in ns_per_call.items():
        median = statistics.median(samples)
        print(f"  {name:36s} {median:8.1f} ns  x{median / base:5.2f}")


if __name__ == "__main__":
    main()
