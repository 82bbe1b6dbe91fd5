"""Peak memory a profiled generate() adds against a bare one: a 1-layer random-weight Llama at batch B, forced to N
new tokens, each measurement in its own process (peak RSS is per process), the peak RSS added by the call.

    python benchmarks/bench_memory.py [--batch 64] [--tokens 512,2048,4096]
    python benchmarks/bench_memory.py --one profiled 64 2048     # one measurement, as JSON (the test's)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
TINY = {
    "num_hidden_layers": 1,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def measure(mode: str, batch: int, tokens: int) -> dict:
    """In this process: the peak RSS one generate() adds (KiB), its wall time, and what was counted."""
    import torch

    sys.path.insert(0, str(TESTS))
    from tiny_models import tiny_llama

    import llmprof

    model = tiny_llama(**TINY, max_position_embeddings=tokens + 16)
    ids = torch.randint(3, 150, (batch, 8), generator=torch.Generator().manual_seed(0))
    kwargs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "max_new_tokens": tokens,
        "min_new_tokens": tokens,
        "do_sample": False,
        "pad_token_id": 0,
    }
    model.generate(**{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # lazy imports, first allocations
    profiler = llmprof.Profiler(model, telemetry=False).attach() if mode == "profiled" else None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = model.generate(**kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counted = profiler.records[-1].tokens_per_sequence if profiler is not None else None
    return {"added_kib": after - before, "wall_s": wall, "tokens": counted, "shape": list(out.shape)}


def measured(mode: str, batch: int, tokens: int) -> dict:
    """:func:`measure` in a fresh process."""
    proc = subprocess.run(
        [sys.executable, __file__, "--one", mode, str(batch), str(tokens)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "child failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", default="512,2048,4096")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "BATCH", "TOKENS"))
    args = parser.parse_args()
    if args.one:
        mode, batch, tokens = args.one
        print(json.dumps(measure(mode, int(batch), int(tokens))))
        return
    print(
        f"1-layer Llama (hidden 16), batch {args.batch}: peak RSS added by one generate(), each in a fresh process"
    )
    print("| new tokens | bare | profiled | ratio | bare wall | profiled wall |")
    print("|---:|---:|---:|---:|---:|---:|")
    for tokens in (int(t) for t in args.tokens.split(",")):
        bare, prof = measured("bare", args.batch, tokens), measured("profiled", args.batch, tokens)
        b, p = bare["added_kib"] / 1024, prof["added_kib"] / 1024
        ratio = f"{p / b:.2f}" if b > 0 else "-"
        print(
            f"| {tokens} | {b:+.1f} MB | {p:+.1f} MB | {ratio} | {bare['wall_s']:.2f} s | {prof['wall_s']:.2f} s |"
        )


if __name__ == "__main__":
    main()
