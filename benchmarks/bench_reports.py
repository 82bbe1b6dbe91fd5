"""What rendering a big run costs: ``report`` time per format for runs of 10, 100 and 1000 repeats of the
synthetic 0 ms model (real records, profiled once in this process; the smaller runs are the first repeats of
the same calls), and each run file's size. Prints the median of ``--rounds`` renders per case and its ratio to
the 10-repeat run, in one process (issue 17's targets: every text format of 1000 repeats within 3x of 10, the
plot within 2x, the run file of 1000 repeats 3x smaller than today's).

    python benchmarks/bench_reports.py [--repeats 10,100,1000] [--formats table,md,csv,json] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from llmprof.capture.profiler import Profiler
from llmprof.report import render
from llmprof.runfile import Run, dump_run
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt


def records(n: int, new_tokens: int):
    """``n`` profiled generate() calls of the 0 ms synthetic model."""
    model = synthetic_model(prefill_ms=0.0, decode_ms=0.0)
    with Profiler(model, telemetry=False) as prof:
        for _ in range(n):
            model.generate(**synthetic_prompt(1, 8), max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return prof.records


def timed(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", default="10,100,1000")
    parser.add_argument("--formats", default="table,md,csv,json")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.repeats.split(",")]
    formats = args.formats.split(",")
    recorded = records(max(sizes), args.new_tokens)
    results: dict[tuple[str, int], float] = {}
    for n in sizes:
        run = Run(config={"model": "synthetic"}, environment={}, records=recorded[:n])
        results["run file (MB)", n] = len(dump_run(run)) / 1e6
        for fmt in formats:
            results[fmt, n] = timed(lambda run=run, fmt=fmt: render(run, fmt), args.rounds)
    base = sizes[0]
    print(
        f"{'case':<16}"
        + "".join(f"{n:>10} rep" for n in sizes)
        + "".join(f"{n:>8}/{base}" for n in sizes[1:])
    )
    for what in ["run file (MB)", *formats]:
        unit = "" if what.startswith("run file") else " s"
        cells = "".join(f"{results[what, n]:>11.3f}{unit or '  '}"[-14:] for n in sizes)
        ratios = "".join(f"{results[what, n] / results[what, base]:>10.1f}x" for n in sizes[1:])
        print(f"{what:<16}{cells}{ratios}")


if __name__ == "__main__":
    main()
