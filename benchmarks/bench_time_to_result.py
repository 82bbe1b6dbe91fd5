"""Time to a result: the whole `python -m llmprof run` command against a bare script that loads the same model
and makes the same W + R generate() calls with nothing measured. Both run as cold subprocesses (model cache
warm), alternating; medians are compared. Also times the bare `python -m llmprof` (the demo default).

    python benchmarks/bench_time_to_result.py [--trials 3] [--repeats 5] [--warmup 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BARE = """
import sys, torch
from llmprof.workloads.models import load_model
from llmprof.workloads.spec import DEFAULT_PROMPT_LEN
calls, tokens = int(sys.argv[1]), int(sys.argv[2])
loaded = load_model("demo", "auto", "auto")
ids = torch.randint(10, len(loaded.tokenizer), (1, DEFAULT_PROMPT_LEN), generator=torch.Generator().manual_seed(0)).to(loaded.device)
for _ in range(calls):
    loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                          do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=0)
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    llmprof_cmd = [
        sys.executable,
        "-m",
        "llmprof",
        "run",
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--ignore-eos",
    ]
    bare_cmd = [sys.executable, "-c", BARE, str(args.repeats + args.warmup), str(args.max_new_tokens)]
    timed([sys.executable, "-m", "llmprof", "--repeats", "1"])  # builds the demo cache if needed
    demo, tool, bare = [], [], []
    for _ in range(args.trials):
        demo.append(timed([sys.executable, "-m", "llmprof"]))
        tool.append(timed(llmprof_cmd))
        bare.append(timed(bare_cmd))
    d, t, b = statistics.median(demo), statistics.median(tool), statistics.median(bare)
    print(f"`python -m llmprof` (demo defaults), cold process: median {d:.2f} s (target < 20 s)")
    print(f"`llmprof run` with {args.warmup}+{args.repeats} calls: median {t:.2f} s")
    print(f"bare script, load + {args.warmup + args.repeats} generate() calls: median {b:.2f} s")
    print(f"ratio llmprof/bare: {t / b:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
