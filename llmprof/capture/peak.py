"""The peak figures a run is judged against: a known GPU's datasheet figures, else (or when asked) a short
measurement on the device itself, cached per device in the llmprof cache directory: a copy far larger than the
caches for the memory bandwidth (bytes read + written), a large matmul for the FLOP/s. On the CPU the same
measurement gives a CPU run the same analysis."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from llmprof.analysis.cards import lookup_card
from llmprof.analysis.roofline import Peaks
from llmprof.cache import cache_dir
from llmprof.capture.environment import cpu_model
from llmprof.runfile import write_atomic

COPY_BYTES = {"cuda": 512 << 20, "cpu": 128 << 20}  # each of the two buffers: well beyond L2/L3
MAX_MATMUL = {"cuda": 8192, "cpu": 4096}  # the matmul grows until one takes MATMUL_TARGET_S, up to this size
MATMUL_TARGET_S = 0.01
BUDGET_S = 0.1  # timing of the copy, then of each matmul size: best of the runs within this time
MIN_RUNS, MAX_RUNS = 3, 50
CACHE_FILE = "peaks.json"  # in llmprof.cache.cache_dir()


@dataclass(frozen=True)
class Measurement:
    """Measured peaks: bytes/s of a copy, FLOP/s of a matmul, what measuring took, and whether it ran now."""

    bandwidth: float
    flops: float
    seconds: float
    fresh: bool


def device_name(device: torch.device) -> str:
    """The GPU's name ("NVIDIA H100 80GB HBM3"), or the CPU's with the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def _time(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one ``fn()`` on ``device`` (CUDA events on a GPU)."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best_time(fn: Callable[[], object], device: torch.device) -> float:
    """Shortest time of one ``fn()`` over MIN_RUNS..MAX_RUNS runs within about BUDGET_S seconds."""
    best, runs, start = math.inf, 0, time.perf_counter()
    while runs < MIN_RUNS or (runs < MAX_RUNS and time.perf_counter() - start < BUDGET_S):
        best = min(best, _time(fn, device))
        runs += 1
    return best


def measure_bandwidth(device: torch.device) -> float:
    """Bytes/s of a device-to-device copy (each byte counted once read and once written)."""
    count = COPY_BYTES[device.type] // 4
    source = torch.ones(count, dtype=torch.float32, device=device)
    target = torch.zeros_like(source)  # both written once: no page faults in the timed copies
    seconds = _best_time(lambda: target.copy_(source), device)
    return 2 * source.nbytes / seconds


def measure_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of large matmuls in ``dtype``. On the CPU, one thread's rate times the threads torch uses: a
    parallel matmul waits for its slowest thread, so one busy core elsewhere would halve the figure."""
    if device.type != "cpu":
        return _matmul_rate(device, dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return threads * _matmul_rate(device, dtype)
    finally:
        torch.set_num_threads(threads)


def _matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """The best FLOP/s of square matmuls from 1024 up, doubled while one takes less than MATMUL_TARGET_S
    (up to MAX_MATMUL). Smaller matmuls time the thread pool's wake-ups more than the arithmetic."""
    best, n = 0.0, 1024
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        matmul = functools.partial(torch.mm, a, torch.randn_like(a), out=torch.empty_like(a))
        matmul()  # warm-up: the first call of a size pays for its setup
        seconds = _best_time(matmul, device)
        best = max(best, 2 * n**3 / seconds)
        if seconds >= MATMUL_TARGET_S or n >= MAX_MATMUL[device.type]:
            return best
        n *= 2


def measured_peaks(device: torch.device, dtype: torch.dtype, refresh: bool = False) -> Measurement:
    """The measured peaks of ``device`` in ``dtype``: from the cache, or measured now (always if ``refresh``)
    and cached, keyed by device, dtype and torch version."""
    key = f"{device.type}|{device_name(device)}|{dtype}|torch {torch.__version__}"
    path = cache_dir() / CACHE_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    if not refresh and isinstance(cached.get(key), dict):
        try:
            return Measurement(**{**cached[key], "fresh": False})
        except TypeError:
            pass  # an entry of another llmprof version: measure again
    start = time.perf_counter()
    bandwidth, flops = measure_bandwidth(device), measure_flops(device, dtype)
    measurement = Measurement(bandwidth, flops, time.perf_counter() - start, fresh=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # hand the buffers back: the run's memory figures should not hold them
    cached[key] = {k: v for k, v in asdict(measurement).items() if k != "fresh"}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1) + "\n")
    except OSError:
        pass  # a cache that cannot be written: the next run measures again
    return measurement


def resolve_peaks(
    device: torch.device,
    dtype: torch.dtype,
    bandwidth: float | None = None,
    flops: float | None = None,
    measure: bool = False,
) -> tuple[Peaks, Measurement | None]:
    """The peaks for a run on ``device`` in ``dtype``, and the measurement if one was used. Each figure comes
    from its override, else the table (a known GPU, unless ``measure``), else a measurement (cached; measured
    again if ``measure``)."""
    name = device_name(device)
    dtype_name = str(dtype).removeprefix("torch.")
    card = lookup_card(name) if device.type == "cuda" and not measure else None
    table = f"table: {card.name}" if card else ""
    bandwidth_source = "override" if bandwidth else table
    bandwidth = bandwidth or (card.bandwidth if card else None)
    flops_source = "override" if flops else table if card and dtype_name in card.flops else ""
    flops = flops or (card.flops[dtype_name] if flops_source else None)
    measurement = None
    if bandwidth is None or flops is None:
        measurement = measured_peaks(device, dtype, refresh=measure)
        if bandwidth is None:
            bandwidth, bandwidth_source = measurement.bandwidth, "measured"
        if flops is None:
            flops, flops_source = measurement.flops, "measured"
    return Peaks(name, dtype_name, bandwidth, bandwidth_source, flops, flops_source), measurement
