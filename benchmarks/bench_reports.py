"""What big runs cost to keep and to look at: the time of the ``report`` command per format (the whole
command a user waits for: Python's start, loading and checking the file, rendering, writing) for runs of 10,
100 and 1000 short repeats of the synthetic 0 ms model, for a run of about a million marks (20 requests of
16384 steps) and for one request with an hour of two GPUs' telemetry (the 61 157 probes the sampler keeps of
an hour at 5 ms: 0.98M counter values), each as a ratio to the 10-repeat run, and what each wrote; and each
run file's size, today's (version 2, compact) against version 1's plain arrays. Real records: the short
repeats are profiled once in this process (the smaller runs are the first repeats of the same calls); the
long run is one profiled 16384-step generation repeated 20 times, each copy shifted in time. Median of
``--rounds`` commands per case, the cases interleaved round by round. Issue 17's targets: every text format
of 1000 repeats within 3x of 10, the plot within 2x, the run file of 1000 repeats 3x smaller than version
1's; the Perfetto trace a fraction of the JSON trace's size and time.

    python benchmarks/bench_reports.py [--formats table,md,csv,steps,json,trace,perfetto,plot] [--rounds 3]
        [--keep DIR]  # keep the run files (0.98M_marks.json, 1000_rep.json, ...) to time other commands on
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmprof.analysis.record import RawRequest
from llmprof.capture.profiler import Profiler
from llmprof.runfile import Run, dump_run, save_run
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

FORMAT_ARGS = {  # a report format's name here -> its report arguments
    "table": ["--format", "table"],
    "md": ["--format", "md"],
    "csv": ["--format", "csv"],
    "steps": ["--format", "csv", "--per-step"],
    "json": ["--format", "json"],
    "trace": ["--format", "trace"],
    "perfetto": ["--format", "perfetto"],
    "plot": ["--format", "plot"],
}


def profiled(n: int, new_tokens: int) -> list[RawRequest]:
    """``n`` profiled generate() calls of the 0 ms synthetic model, ``new_tokens`` each."""
    model = synthetic_model(prefill_ms=0.0, decode_ms=0.0)
    with Profiler(model, telemetry=False) as prof:
        for _ in range(n):
            model.generate(**synthetic_prompt(1, 8), max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return prof.records


def repeated(record: RawRequest, n: int) -> list[RawRequest]:
    """``record`` and ``n - 1`` copies of it, each starting 1 ms after the one before ended."""
    start, end = record.window
    shifts = [i * (end - start + 1_000_000) for i in range(n)]
    return [
        dataclasses.replace(
            record,
            host_ns=[t + s for t in record.host_ns],
            device_ns=[None if t is None else t + s for t in record.device_ns],
        )
        for s in shifts
    ]


def hour_of_telemetry(record: RawRequest, probes: int = 61_157) -> dict:
    """A sampler snapshot of an hour from ``record``'s start: ``probes`` probes (what the sampler keeps of an
    hour at 5 ms, benchmarks/bench_telemetry_bound.py), two GPUs' rows of NVML's fields each."""
    rng = random.Random(0)
    start = record.window[0]
    t_ns = [start + i * 3_600_000_000_000 // probes for i in range(probes) for _ in range(2)]
    n = len(t_ns)
    return {
        "kind": "nvml",
        "interval_s": 0.005,
        "devices": [{"index": "0"}, {"index": "1"}],
        "samples": {
            "t_ns": t_ns,
            "device": ["0", "1"] * probes,
            "gpu_util": [rng.randrange(101) for _ in range(n)],
            "mem_util": [rng.randrange(101) for _ in range(n)],
            "mem_used_bytes": [rng.randrange(1 << 34) for _ in range(n)],
            "sm_clock_mhz": [1980] * n,
            "mem_clock_mhz": [2619] * n,
            "power_w": [rng.random() * 700 for _ in range(n)],
            "temperature_c": [60] * n,
            "clock_event_reasons": [0] * n,
        },
    }


def command(path: Path, args: list[str], out: Path) -> tuple[float, int]:
    """Seconds of one ``python -m llmprof report`` of ``path``, and the bytes it wrote."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "llmprof", "report", str(path), *args, "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(FORMAT_ARGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-steps", type=int, default=16384)
    parser.add_argument("--long-requests", type=int, default=20)
    parser.add_argument(
        "--keep", metavar="DIR", help="write the run files here and keep them (else a temp dir)"
    )
    args = parser.parse_args()
    formats = args.formats.split(",")
    short = profiled(1000, 16)
    long = repeated(profiled(1, args.long_steps)[0], args.long_requests)
    runs = {f"{n} rep": short[:n] for n in (10, 100, 1000)}
    runs[f"{sum(len(r.label) for r in long) / 1e6:.2f}M marks"] = long
    runs["hour telemetry"] = short[:1]
    telemetry = {"hour telemetry": hour_of_telemetry(short[0])}
    cases = list(runs)
    times: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        paths, rows = {}, {"run file v1 (MB)": {}, "run file (MB)": {}, "save (s)": {}}
        for case, records in runs.items():
            run = Run(
                config={"model": "synthetic"}, environment={}, records=records, telemetry=telemetry.get(case)
            )
            paths[case] = Path(tmp) / f"{case.replace(' ', '_')}.json"
            start = time.perf_counter()
            save_run(run, paths[case])
            rows["save (s)"][case] = time.perf_counter() - start
            rows["run file (MB)"][case] = paths[case].stat().st_size / 1e6
            rows["run file v1 (MB)"][case] = len(dump_run(run, compact=False)) / 1e6
        for _ in range(args.rounds):
            for fmt in formats:
                for case in cases:
                    out = Path(tmp) / f"out.{fmt}"
                    seconds, sizes[fmt, case] = command(paths[case], FORMAT_ARGS[fmt], out)
                    times.setdefault((fmt, case), []).append(seconds)
    for fmt in formats:
        rows[f"{fmt} (s)"] = {case: statistics.median(times[fmt, case]) for case in cases}
    base = cases[0]
    print(
        f"{'case':<18}"
        + "".join(f"{c:>14}" for c in cases)
        + "".join(f"{c + ' / 10':>20}" for c in cases[1:])
    )
    for what, values in rows.items():
        cells = "".join(f"{values[c]:>14.3f}" for c in cases)
        ratios = "".join(f"{values[c] / values[base]:>19.1f}x" for c in cases[1:])
        print(f"{what:<18}{cells}{ratios}")
    print("output (MB)".ljust(18) + "".join(f"{c:>14}" for c in cases))
    for fmt in formats:
        print(f"{fmt:<18}" + "".join(f"{sizes[fmt, c] / 1e6:>14.3f}" for c in cases))
    v1, v2 = rows["run file v1 (MB)"]["1000 rep"], rows["run file (MB)"]["1000 rep"]
    print(f"run file of 1000 repeats: {v1 / v2:.1f}x smaller than version 1's")


if __name__ == "__main__":
    main()
