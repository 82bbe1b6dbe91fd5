"""The profiler's own cost, interleaved in one process (medians over pairs of a bare and a profiled call).

1. Added host time per decode step on the synthetic model with a 0 ms forward, at 64, 4096 and 16,384 new
   tokens, batch 1 and 64: the median interval between the starts of consecutive forwards (the whole step:
   generate()'s work, the model's and the profiler's), profiled minus bare. Medians over thousands of steps
   per call: a load-proof figure. The end-of-call cost (resolve, token count) is measured apart: the time from
   the request's end stamp to generate()'s return.
   Code layout and cache effects move a whole call by a few us per step either way (the A/A row: a bare
   call against a bare call in the same interleaving shows that floor).
2. The profiler's calls of one step in isolation, the load-proof figure: the marking forward call around a
   forward that does nothing, and the token-marking criteria list around criteria that do nothing, against
   the same without profiling, in tight interleaved loops.
3. The demo model's per-token time with and without the profiler (telemetry off and on), and an A/A control:
   (wall(N) - wall(1)) / (N - 1), from bare perf_counter stamps around generate() in every condition.

    python benchmarks/bench_overhead.py [--pairs 15] [--tokens 64] [--quick | --demo]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from fixed_length import fixed_length

from llmprof import Label, Profiler
from llmprof.workloads.models import load_model
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

SHAPES = ((1, 64), (1, 4096), (1, 16384), (64, 64), (64, 4096))


def wall(model, inputs, tokens: int) -> float:
    start = time.perf_counter()
    model.generate(**inputs, **fixed_length(tokens))
    return time.perf_counter() - start


def per_token(model, inputs, tokens: int, condition: str) -> float:
    """(wall(N) - wall(1)) / (N - 1) of one condition: "bare", or "telemetry off" / "telemetry on" profiled."""
    if condition == "bare":
        return (wall(model, inputs, tokens) - wall(model, inputs, 1)) / (tokens - 1)
    with Profiler(model, telemetry=condition == "telemetry on"):
        return (wall(model, inputs, tokens) - wall(model, inputs, 1)) / (tokens - 1)


def compare(model, inputs, tokens: int, rounds: int) -> dict[str, float]:
    """Median per-token time of each condition (and of a second bare one, the A/A control), over rounds in
    rotating order, after a warm-up of every path."""
    conditions = ["bare", "control", "telemetry off", "telemetry on"]
    for condition in conditions:
        per_token(model, inputs, 8, "bare" if condition == "control" else condition)
    times: dict[str, list[float]] = {c: [] for c in conditions}
    for i in range(rounds):
        for condition in conditions[i % 4 :] + conditions[: i % 4]:
            times[condition].append(
                per_token(model, inputs, tokens, "bare" if condition == "control" else condition)
            )
    return {c: statistics.median(v) for c, v in times.items()}


def step_interval(model, inputs, tokens: int, profiler: Profiler | None) -> tuple[float, float | None]:
    """One call: the median interval between forward starts (ns), and the end-of-call cost (ns) if profiled."""
    model.forward_log.clear()
    if profiler is not None:
        profiler.attach()
    try:
        model.generate(**inputs, **fixed_length(tokens))
        returned = time.monotonic_ns()
    finally:
        if profiler is not None:
            profiler.detach()
    starts = [start for start, _, _ in model.forward_log[1:]]  # decode forwards (the prefill's is not a step)
    interval = statistics.median(b - a for a, b in itertools.pairwise(starts))
    if profiler is None:
        return interval, None
    raw = profiler.records[-1]
    end_stamp = raw.host_ns[raw.label.index(Label.REQUEST_END)]
    return interval, returned - end_stamp  # perf_counter_ns and the timeline share CLOCK_MONOTONIC


def per_step_cost(batch: int, tokens: int, pairs: int) -> dict[str, float]:
    """Rounds of (bare, profiled, bare) calls in rotating order: profiled minus bare, and bare minus bare."""
    model, inputs = synthetic_model(prefill_ms=0.0, decode_ms=0.0), synthetic_prompt(batch, 16)
    profiler = Profiler(model, telemetry=False)
    step_interval(model, inputs, 16, None)
    step_interval(model, inputs, 16, profiler)
    added, control, bare, ends = [], [], [], []
    for i in range(pairs):
        order = ["bare", "profiled", "control"]
        order = order[i % 3 :] + order[: i % 3]
        got = {
            name: step_interval(model, inputs, tokens, profiler if name == "profiled" else None)
            for name in order
        }
        added.append(got["profiled"][0] - got["bare"][0])
        control.append(got["control"][0] - got["bare"][0])
        bare.append(got["bare"][0])
        ends.append(got["profiled"][1])
    return {
        "bare_us": statistics.median(bare) / 1e3,
        "added_us": statistics.median(added) / 1e3,
        "control_us": statistics.median(control) / 1e3,
        "end_ms": statistics.median(ends) / 1e6,
    }


def isolated_step_cost(blocks: int = 15, steps: int = 20_000) -> dict[str, float]:
    """ns per step of the profiler's per-step calls alone: forward and criteria, marked against bare."""
    from transformers import StoppingCriteriaList

    from llmprof._core import Timeline
    from llmprof.capture.hooks import TokenMarkingCriteria

    class NoCriteria(StoppingCriteriaList):
        """generate()'s criteria list with no criterion: what remains is the list's own call."""

    timeline = Timeline(4 * steps + 16)
    ids, done = torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, dtype=torch.bool)

    def forward(*args, **kwargs):
        return done

    marked_forward = timeline.timed(forward)
    bare_criteria, marked_criteria = NoCriteria(), TokenMarkingCriteria(NoCriteria(), timeline)

    def loop(fwd, criteria) -> float:
        timeline.begin_request(steps + 1, 1)
        timeline.arm(True)
        start = time.perf_counter_ns()
        for _ in range(steps):
            fwd(input_ids=ids, use_cache=True)
            criteria(ids, None)
        elapsed = time.perf_counter_ns() - start
        timeline.end_request()
        return elapsed / steps

    added = []
    for _ in range(blocks):
        bare = loop(forward, bare_criteria)
        added.append(loop(marked_forward, marked_criteria) - bare)
    return {"added_ns": statistics.median(added), "min_ns": min(added)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="batch 1 at 64 and 4096 tokens only, no demo")
    parser.add_argument("--demo", action="store_true", help="the demo model's ratios only")
    args = parser.parse_args()

    if not args.demo:
        steps(args.quick, args.pairs)
    if not args.quick:
        demo(args)


def steps(quick: bool, rounds: int) -> None:
    """Part 1 and 2: the per-step cost in isolation and inside generate() on the synthetic model."""
    print(
        f"synthetic model, 0 ms forward, CPU, {torch.get_num_threads()} threads; medians over interleaved pairs"
    )
    isolated = isolated_step_cost()
    print(
        f"the profiler's per-step calls in isolation (forward + criteria): {isolated['added_ns']:.0f} ns per step"
        f" (min {isolated['min_ns']:.0f}; target <= 2000)"
    )
    print("| batch | new tokens | rounds | bare step | added per step | A/A control | end of call |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    figures = {}
    for batch, tokens in SHAPES if not quick else ((1, 64), (1, 4096)):
        pairs = max(3, rounds * 64 // tokens) if tokens > 64 else rounds
        cost = figures[batch, tokens] = per_step_cost(batch, tokens, pairs)
        print(
            f"| {batch} | {tokens} | {pairs} | {cost['bare_us']:.1f} us | {cost['added_us']:+.2f} us |"
            f" {cost['control_us']:+.2f} us | {cost['end_ms']:.2f} ms |"
        )
    longest = max(t for b, t in figures if b == 1)
    short, long = figures[1, 64]["added_us"], figures[1, longest]["added_us"]
    print(f"batch 1, {longest} vs 64 tokens: {long:+.2f} vs {short:+.2f} us per step (target: within 1.2x)")


def demo(args: argparse.Namespace) -> None:
    """Part 3: the demo model's per-token time, profiled (telemetry off and on) and bare."""
    loaded = load_model("demo", "cpu", "float32")
    ids = torch.randint(
        10, len(loaded.tokenizer), (1, args.prompt_len), generator=torch.Generator().manual_seed(0)
    )
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    medians = compare(loaded.model, inputs, args.tokens, args.pairs)
    bare = medians["bare"]
    print(
        f"demo model, prompt {args.prompt_len}, {args.tokens} tokens, {args.pairs} rounds: per-token {bare * 1e3:.3f} ms"
        f" bare; ratios to it: A/A control {medians['control'] / bare:.4f}, profiled telemetry off"
        f" {medians['telemetry off'] / bare:.4f}, telemetry on {medians['telemetry on'] / bare:.4f} (target <= 1.005)"
    )


if __name__ == "__main__":
    main()
