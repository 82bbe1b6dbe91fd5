"""What a sweep costs beyond its generate() calls: ``llmprof sweep`` over a grid of the demo model against the
same calls made bare (no profiler, the same warm-ups and repeats per point, on an already loaded model), in one
process. Prints both wall times and their ratio; the sweep's includes its one model load, its roofline, the
profiling and the save after every point. Bare calls are timed before and after the sweep (the mean of both,
so that drift in machine load hits both sides alike).

    python benchmarks/bench_sweep.py [--batch-size 1,2,4] [--depth 0,256] [--prompt-len 32] [--max-new-tokens 16]

A point at a depth makes its bare calls as the sweep does: on the same KV cache of that many tokens, cropped
back after each call (``workloads.runner.depth_cache``, its one prefill of the depth counted on both sides).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from llmprof.analysis.grid import parse_values, points
from llmprof.cli import main as llmprof
from llmprof.workloads.models import load_model
from llmprof.workloads.runner import depth_cache


def bare(model, grid: list[dict], calls: int, new_tokens: int) -> float:
    """Seconds of ``calls`` plain generate() calls per point of ``grid`` (and of building its depth cache)."""
    vocab = model.config.vocab_size
    total = 0.0
    for point in grid:
        start = time.perf_counter()
        ids = torch.randint(3, vocab, (point["batch_size"], point["prompt_len"]))
        inputs, cache = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, None
        depth = point.get("depth", 0)
        if depth:
            inputs, cache = depth_cache(model, inputs, depth)
        for _ in range(calls):
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            if cache is not None:
                cache.crop(depth - cache.get_seq_length())
        total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", default="1,2,4")
    parser.add_argument("--prompt-len", default="32")
    parser.add_argument("--depth", default="0,256", help="context depths (0: no depth axis)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    axes = {
        "batch_size": parse_values(args.batch_size, "--batch-size"),
        "prompt_len": parse_values(args.prompt_len, "--prompt-len"),
        "depth": parse_values(args.depth, "--depth", 0),
    }
    grid = points(axes)
    model = load_model("demo", "cpu", "auto", None).model
    calls = args.repeats + 1  # the sweep's warm-up (1) and repeats
    before = bare(model, grid, calls, args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        status = llmprof(
            [
                "sweep",
                "--batch-size",
                args.batch_size,
                "--prompt-len",
                args.prompt_len,
                "--depth",
                args.depth,
                "--repeats",
                str(args.repeats),
            ]
            + ["--max-new-tokens", str(args.max_new_tokens), "--ignore-eos", "--warmup", "1"]
            + ["--json", str(Path(tmp) / "sweep.json"), "-o", str(Path(tmp) / "table.txt")]
        )
        swept = time.perf_counter() - start
    after = bare(model, grid, calls, args.max_new_tokens)
    if status != 0:
        raise SystemExit(f"the sweep failed (exit {status})")
    plain = (before + after) / 2
    grid_text = " x ".join(f"{name} {','.join(map(str, values))}" for name, values in axes.items())
    print(f"{len(grid)} points ({grid_text}) x {calls} calls of {args.max_new_tokens} tokens (demo, CPU)")
    print(f"bare generate() calls: {before:.2f} s before, {after:.2f} s after the sweep")
    print(f"llmprof sweep (one model load, profiled, saved after every point): {swept:.2f} s")
    print(f"sweep / bare: {swept / plain:.3f}")


if __name__ == "__main__":
    main()
