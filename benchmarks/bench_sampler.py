"""Telemetry sampler cost: the time of one sample, and TPOT and the ITL tail (p99 of the inter-token latencies)
on the demo model with the sampler on vs off, interleaved in one process (each condition attaches its own
profiler; TPOT and ITL are the profiler's own figures), at the default interval and at a fast one (--fast, 10 ms
by default: the sampler thread wakes 10x more often, so that its GIL use would show in the tail if it had any).
Then where the fast interval's cost comes from: the same calls (telemetry off) beside a thread that only wakes
at that interval, one that also takes the GIL for a probe's time, and one that runs the process probe.

    python benchmarks/bench_sampler.py [--pairs 20] [--tokens 64] [--fast 0.01]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
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


class Waker:
    """A thread beside the calls that wakes every ``interval_s`` and then: nothing ("wake"), holds the GIL for
    ``hold_ns`` ("gil"), or runs the process sampler's probe ("probe")."""

    def __init__(self, work: str, interval_s: float, hold_ns: int):
        self.work, self.interval_s, self.hold_ns = work, interval_s, hold_ns
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        sampler = make_sampler([], self.interval_s)
        while not self._stop.wait(self.interval_s):
            if self.work == "probe":
                sampler.sample_once()
            elif self.work == "gil":
                start = time.perf_counter_ns()
                while time.perf_counter_ns() - start < self.hold_ns:
                    pass

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def attribution(model, inputs, tokens: int, rounds: int, interval: float, hold_ns: int) -> dict[str, dict]:
    """Median TPOT and pooled ITL p99 per neighbour thread ("none": no thread), in rotating order."""
    names = ["none", "wake", "gil", "probe"]
    tpots: dict[str, list[float]] = {name: [] for name in names}
    itls: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % 4 :] + names[: i % 4]:
            with contextlib.nullcontext() if name == "none" else Waker(name, interval, hold_ns):
                t, itl = tpot(model, inputs, tokens, False)
            tpots[name].append(t)
            itls[name].extend(itl)
    return {name: {"tpot": statistics.median(tpots[name]), "p99": p99(itls[name])} for name in names}


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
    found = attribution(loaded.model, inputs, args.tokens, args.pairs, args.fast, round(cost * 1e9))
    base = found["none"]
    for name, what in (
        ("wake", "only wakes"),
        ("gil", f"wakes and holds the GIL {cost * 1e6:.0f} us"),
        ("probe", "wakes and probes"),
    ):
        r = found[name]
        print(
            f"a thread that {what} every {args.fast * 1e3:.0f} ms: TPOT ratio {r['tpot'] / base['tpot']:.4f},"
            f" ITL p99 ratio {r['p99'] / base['p99']:.4f}"
        )


if __name__ == "__main__":
    main()
