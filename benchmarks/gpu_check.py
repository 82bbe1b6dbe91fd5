"""Every GPU check in one command, for the first minutes of a session that is lent a GPU; prints a Markdown
block to paste into docs/gpu-validation.md.

    python benchmarks/gpu_check.py [--budget-s 420] [--out gpu-check.md]

Sections (each fails alone, with its reason, and is skipped when the time budget is spent):
 1. the card, driver, torch and the timeline backend;
 2. the demo on cuda (`python -m llmprof run --device cuda`);
 3. ground truth: a forward that spins the GPU for a known time (torch.cuda._sleep) while the host returns at
    once: TPOT within 0.5% of the programmed time, host-bound steps ~0%;
 4. llmprof's events against torch.cuda.Event on the same decode forwards;
 5. a random-weight ~1B Llama in bf16 (built from a config, no download): profiled and unprofiled generate()
    interleaved, the ratio of their wall times (goal <= 1.003), and its MBU against the card;
 6. static cache + torch.compile (CUDA graphs) with the profiler attached;
 7. NVML: the sample's cost, the driver-buffered samples, energy per token;
 8. the measured peaks against the card table;
 9. the demo's kernels per step (`--kernels 4`): CUDA kernels attributed to steps, device-idle share;
10. `--nvtx --cuda-profiler-range` on the real driver;
11. a batch x depth sweep of the demo.
Without a GPU it says so and exits 2; `--cpu` runs the sections that can run on the CPU, to check the script.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable

import torch
from gpu_ground_truth import cycles_per_ms  # this script's folder is on sys.path

import llmprof
from llmprof.workloads.synthetic import synthetic_model, synthetic_prompt

LLAMA_1B = {  # about 1.1 B parameters
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}


class Report:
    """The Markdown block, section by section, within a time budget."""

    def __init__(self, budget_s: float, device: str):
        self.lines: list[str] = []
        self.deadline = time.monotonic() + budget_s
        self.device = device

    def section(self, title: str, check: Callable[[], list[str]], needs_s: float) -> None:
        """Run one check (its lines under ``title``), unless less than ``needs_s`` of the budget is left."""
        self.lines += ["", f"### {title}", ""]
        left = self.deadline - time.monotonic()
        if left < needs_s:
            self.lines.append(
                f"- skipped: {left:.0f} s of the budget left, this check needs about {needs_s:.0f} s"
            )
            return
        start = time.monotonic()
        try:
            self.lines += check()
        except Exception as exc:  # noqa: BLE001 - one failing check must not hide the others
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self.lines.append(f"- failed: {last}")
        self.lines.append(f"- ({time.monotonic() - start:.0f} s)")
        print("\n".join(self.lines[-3:]), file=sys.stderr, flush=True)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def environment(device: str) -> list[str]:
    from llmprof._core import cuda_driver_status

    ok, message = cuda_driver_status()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return [
        f"- card: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); llmprof {llmprof.__version__}",
        f"- CUDA driver through the timeline: {'ok' if ok else 'unavailable'} ({message})",
    ]


def cli(*args: str, stderr_lines: int = 3) -> list[str]:
    """``python -m llmprof ARGS``: the command, its exit status, its output (and its last stderr lines)."""
    command = [sys.executable, "-m", "llmprof", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    said = [f"    {line}" for line in result.stderr.strip().splitlines()[-stderr_lines:]]
    body = result.stdout.strip().splitlines()
    return [f"- `{' '.join(command[1:])}`: exit {result.returncode}", "", *body, "", "stderr:", "", *said]


def demo(device: str) -> list[str]:
    return cli("run", "--device", device, "--repeats", "5", "--format", "md")


def kernels(device: str) -> list[str]:
    """The kernel table of the demo's steps: CUDA kernels attributed to steps, and the device-idle share."""
    return cli("run", "--device", device, "--repeats", "3", "--max-new-tokens", "32", "--kernels", "4",
               "--format", "md")  # fmt: skip


def nsight(device: str) -> list[str]:
    """NVTX ranges and cuProfilerStart/Stop on the real driver (no nsys attached: both must just work)."""
    return cli("run", "--device", device, "--repeats", "2", "--max-new-tokens", "16", "--nvtx",
               "--cuda-profiler-range")  # fmt: skip


def sweep(device: str) -> list[str]:
    """A batch x depth sweep of the demo: TPOT at depth, the KV cache cropped back between calls."""
    return cli(
        "sweep", "--device", device, "--batch-size", "1,4", "--prompt-len", "64", "--depth", "0,1024",
        "--max-new-tokens", "32", "--repeats", "3", "--format", "md",
    )  # fmt: skip


def ground_truth(device: str, decode_ms: float = 15.0) -> list[str]:
    """The _sleep model, with torch.cuda.Event pairs around the same forwards (sections 3 and 4)."""
    if device != "cuda":
        return ["- skipped: torch.cuda._sleep needs a GPU"]
    model = synthetic_model(
        prefill_ms=40.0, decode_ms=decode_ms, eos_at=[33], device_sleep=True, cycles_per_ms=cycles_per_ms()
    ).to("cuda")
    inputs = synthetic_prompt(1, 16, "cuda")
    begin: list[torch.cuda.Event] = []
    end: list[torch.cuda.Event] = []
    with llmprof.profile(model) as prof:
        handles = [  # after llmprof's own: a torch.cuda.Event pair around each forward
            model.register_forward_pre_hook(lambda *_: begin.append(_recorded())),
            model.register_forward_hook(lambda *_: end.append(_recorded())),
        ]
        for _ in range(6):
            begin.clear()
            end.clear()
            model.generate(**inputs, max_new_tokens=40)
        for handle in handles:
            handle.remove()
    torch.cuda.synchronize()
    requests = prof.requests[1:]
    tpot = statistics.median(r.tpot for r in requests)
    bound = statistics.median(r.breakdown.host_bound_share for r in requests)
    last = prof.requests[-1].breakdown.step_forward
    theirs = [b.elapsed_time(e) / 1e3 for b, e in zip(begin[1:], end[1:])]
    diffs = [abs(a - b) * 1e6 for a, b in zip(last, theirs) if a is not None]
    return [
        (
            f"- TPOT {tpot * 1e3:.3f} ms against {decode_ms} ms programmed: {(tpot / (decode_ms / 1e3) - 1) * 100:+.2f}%"
            " (goal: within 0.5%)"
        ),
        f"- host-bound decode steps: {bound:.0%} (goal ~0%: the GPU is always busy)",
        (
            f"- decode forward spans, llmprof vs torch.cuda.Event on the same {len(diffs)} forwards: median |diff|"
            f" {statistics.median(diffs):.2f} us, max {max(diffs):.2f} us"
        ),
    ]


def _recorded() -> torch.cuda.Event:
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def llama_1b(device: str, pairs: int = 8, new_tokens: int = 128) -> list[str]:
    """Profiled and unprofiled generate() interleaved on one model; the wall-time ratio and the roofline."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmprof.analysis.roofline import Roofline
    from llmprof.capture.model_shape import model_shape
    from llmprof.capture.peak import resolve_peaks

    config = LLAMA_1B if device == "cuda" else {**LLAMA_1B, "hidden_size": 256, "intermediate_size": 704,
                                                  "num_hidden_layers": 2, "num_attention_heads": 4,
                                                  "num_key_value_heads": 2}  # fmt: skip
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**config)).to(dtype).eval()
    ids = torch.randint(3, 30000, (1, 128), device=device)
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}

    def wall() -> float:
        synchronize(device)
        start = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        synchronize(device)
        return time.perf_counter() - start

    wall()  # warm-up
    profiler = llmprof.Profiler(model, telemetry=False)
    ratios = []
    for _ in range(pairs):
        bare = wall()
        with profiler:
            profiled = wall()
        ratios.append(profiled / bare)
    peaks, _ = resolve_peaks(torch.device(device), dtype)
    analyses = [Roofline(model_shape(model), peaks).analyze(m) for m in profiler.requests]
    mbu = statistics.median(a.mbu for a in analyses if a.mbu is not None)
    tpot = statistics.median(r.tpot for r in profiler.requests)
    parameters = sum(p.numel() for p in model.parameters())
    return [
        f"- {parameters / 1e9:.2f} B parameters, {dtype}, batch 1, prompt 128, {new_tokens} new tokens",
        (
            f"- profiled / unprofiled wall time, {pairs} interleaved pairs: median {statistics.median(ratios):.4f}"
            f" (min {min(ratios):.4f}, max {max(ratios):.4f}; goal <= 1.003)"
        ),
        f"- TPOT {tpot * 1e3:.3f} ms; MBU {mbu:.0%} of {peaks.bandwidth / 1e9:.0f} GB/s ({peaks.bandwidth_source})",
    ]


def compiled_static_cache(device: str) -> list[str]:
    """A static cache with torch.compile (CUDA graphs on a GPU), the profiler attached."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = {**LLAMA_1B, "num_hidden_layers": 4}
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**config)).to(torch.bfloat16).eval()
    ids = torch.randint(3, 30000, (1, 64), device=device)
    kwargs = {
        "max_new_tokens": 64,
        "min_new_tokens": 64,
        "do_sample": False,
        "cache_implementation": "static",
    }
    with llmprof.profile(model, telemetry=False) as prof:
        start = time.monotonic()
        model.generate(input_ids=ids, **kwargs)  # compiles
        compile_s = time.monotonic() - start
        for _ in range(3):
            model.generate(input_ids=ids, **kwargs)
    r = prof.requests[-1]
    forwards = sum(label == llmprof.Label.FORWARD_BEGIN for label in prof.records[-1].label)
    bound = r.breakdown.host_bound_share
    return [
        f"- first call (compiling) {compile_s:.1f} s; then {len(prof.requests) - 1} calls recorded",
        (
            f"- last call: {r.output_tokens} tokens, {forwards} forwards marked, TPOT {r.tpot * 1e3:.3f} ms,"
            f" host-bound steps {'-' if bound is None else f'{bound:.0%}'}, flags {prof.records[-1].warnings or 'none'}"
        ),
    ]


def nvml(device: str) -> list[str]:
    """The NVML sampler on the GPU during a _sleep run: probe cost, buffered samples, energy."""
    if device != "cuda":
        return ["- skipped: NVML samples GPUs"]
    from llmprof.analysis.telemetry import requests_telemetry
    from llmprof.capture.sampling import NvmlSampler

    index = torch.cuda.current_device()
    sampler = NvmlSampler([index])
    cost = sampler.measure_probe_cost(tries=9)
    model = synthetic_model(
        prefill_ms=40.0, decode_ms=10.0, device_sleep=True, cycles_per_ms=cycles_per_ms()
    ).to("cuda")
    with llmprof.profile(model, telemetry=sampler) as prof:
        for _ in range(3):
            model.generate(**synthetic_prompt(1, 8, "cuda"), max_new_tokens=64)
    snapshot = prof.telemetry or {}
    per_request = requests_telemetry(snapshot, prof.records)
    energy = [t.energy_per_token_j for t in per_request if t.energy_per_token_j is not None]
    return [
        (
            f"- one probe: {cost * 1e3:.2f} ms; interval chosen {sampler.interval_s * 1e3:.0f} ms; power"
            f" {snapshot.get('power_source')}"
        ),
        (
            f"- buffered fields: {snapshot.get('buffered_fields')}, {len(snapshot.get('buffered', {}).get('t_ns', []))}"
            f" samples; sources per request {[t.source for t in per_request]}"
        ),
        f"- energy per token: {statistics.median(energy):.4f} J" if energy else "- energy per token: none",
        f"- errors: {snapshot.get('errors') or 'none'}",
    ]


def peaks(device: str) -> list[str]:
    from llmprof.analysis.cards import lookup_card
    from llmprof.capture.peak import device_name, measured_peaks

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    measured = measured_peaks(torch.device(device), dtype, refresh=True)
    name = device_name(torch.device(device))
    card = lookup_card(name) if device == "cuda" else None
    lines = [
        (
            f"- measured in {measured.seconds:.1f} s: {measured.bandwidth / 1e9:.0f} GB/s copy,"
            f" {measured.flops / 1e12:.1f} TFLOP/s {dtype} matmul"
        )
    ]
    if card is not None:
        flops = card.flops.get(str(dtype).removeprefix("torch."))
        lines.append(
            f"- card table ({card.name}): {card.bandwidth / 1e9:.0f} GB/s, {flops / 1e12:.1f} TFLOP/s:"
            f" measured/table {measured.bandwidth / card.bandwidth:.2f} and {measured.flops / flops:.2f}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting checks after this")
    parser.add_argument("--out", help="also write the Markdown block to this file")
    parser.add_argument(
        "--cpu", action="store_true", help="run what can run on the CPU (to check the script)"
    )
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (--cpu runs the script's CPU sections)", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"
    report = Report(args.budget_s, device)
    today = datetime.date.today().isoformat()
    report.lines.append(f"## {today}: {environment(device)[0].removeprefix('- card: ').split(';')[0]}")
    report.section("Environment", lambda: environment(device), 1)
    report.section("Demo on the device", lambda: demo(device), 60)
    report.section(
        "Ground truth (torch.cuda._sleep) and events vs torch.cuda.Event", lambda: ground_truth(device), 30
    )
    report.section("Overhead on a ~1B Llama, bf16", lambda: llama_1b(device), 90)
    report.section("NVML", lambda: nvml(device), 20)
    report.section("Peaks against the card table", lambda: peaks(device), 20)
    report.section("Kernels of a step (--kernels 4)", lambda: kernels(device), 60)
    report.section("NVTX and the CUDA profiler range", lambda: nsight(device), 30)
    report.section("Sweep: batch x depth", lambda: sweep(device), 60)
    if device == "cuda":
        report.section("Static cache + torch.compile", lambda: compiled_static_cache(device), 150)
    text = "\n".join(report.lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
