"""GPU ground truth: a synthetic model whose forward spins the GPU for a known time (torch.cuda._sleep) while the
host returns at once. Only an event-based timeline reports the right forward spans; host stamps see ~0 ms.

    python benchmarks/gpu_ground_truth.py [--prefill-ms 40] [--decode-ms 15] [--eos-at 32] [--repeats 5]

Prints the reported TTFT, TPOT and breakdown against the programmed times. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import llmprof
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt


def cycles_per_ms() -> float:
    """GPU clock cycles per ms of torch.cuda._sleep, measured with CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 50_000_000
    torch.cuda._sleep(cycles)  # warm-up
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / start.elapsed_time(end)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill-ms", type=float, default=40.0)
    parser.add_argument("--decode-ms", type=float, default=15.0)
    parser.add_argument("--eos-at", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_ground_truth: no CUDA GPU available", file=sys.stderr)
        return 2

    rate = cycles_per_ms()
    model = synthetic_model(
        prefill_ms=args.prefill_ms,
        decode_ms=args.decode_ms,
        eos_at=[args.eos_at],
        device_sleep=True,
        cycles_per_ms=rate,
    ).to("cuda")
    inputs = synthetic_prompt(1, 16, "cuda")
    with llmprof.profile(model) as prof:
        for _ in range(args.repeats + 1):
            model.generate(**inputs, max_new_tokens=args.eos_at + 8)
    requests = prof.requests[1:]
    med = statistics.median
    ttft, tpot = med(r.ttft for r in requests), med(r.tpot for r in requests)
    forward = med(r.breakdown.decode_forward for r in requests)
    prefill = med(r.breakdown.prefill for r in requests)
    bound = med(r.breakdown.host_bound_share for r in requests)
    print(f"{torch.cuda.get_device_name()} | timeline {prof.backend} | {rate / 1e3:.0f} sleep cycles per us")
    print(f"tokens per request: {requests[-1].output_tokens} (EOS programmed at {args.eos_at})")
    print(f"prefill forward: {prefill * 1e3:.3f} ms (programmed {args.prefill_ms} ms)")
    print(f"decode forward:  {forward * 1e3:.3f} ms (programmed {args.decode_ms} ms)")
    print(
        f"TTFT: {ttft * 1e3:.3f} ms, TPOT: {tpot * 1e3:.3f} ms "
        f"(TPOT error vs programmed: {(tpot / (args.decode_ms / 1e3) - 1) * 100:+.2f}%)"
    )
    print(f"host-bound decode steps: {bound * 100:.0f}% (expected ~0%: the GPU is always busy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
