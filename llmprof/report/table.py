"""Terminal tables of a run: the four metrics with their spread, and the breakdown. Never imports torch."""

from __future__ import annotations

from collections import Counter
from typing import IO

from rich.console import Console
from rich.table import Table

from llmprof.report.json_format import Run
from llmprof.stats import METRICS, Summary, summarize, summarize_requests
from llmprof.telemetry import request_telemetry, run_warnings

HEADLINE = {
    "ttft": "TTFT",
    "tpot": "TPOT",
    "latency": "latency (E2E)",
    "tps": "TPS (output)",
    "itl_p50": "ITL p50",
    "itl_p99": "ITL p99",
    "decode_tps": "decode TPS",
    "prefill_tps": "prefill throughput",
}
BREAKDOWN = {
    "host_prep": "host prep",
    "vision": "vision encoder",
    "prefill": "prefill forward",
    "first_sample": "first sample",
    "decode_forward": "decode forward / step",
    "sampling": "sampling / step",
    "host_gap": "host gap / step",
    "host_bound_share": "host-bound decode steps",
}


# unit of a value -> (shown unit, scale)
DISPLAY_UNIT = {"s": ("ms", 1e3), "ratio": ("%", 100.0), "bytes": ("MiB", 1 / 2**20), "pct": ("%", 1.0)}
TELEMETRY = {  # RequestTelemetry field -> (label, unit)
    "gpu_util_mean": ("GPU utilization, mean", "pct"),
    "gpu_util_max": ("GPU utilization, max", "pct"),
    "mem_used_peak_bytes": ("GPU memory used (NVML), peak", "bytes"),
    "torch_peak_allocated_bytes": ("torch allocated, peak", "bytes"),
    "torch_peak_reserved_bytes": ("torch reserved, peak", "bytes"),
    "sm_clock_mean_mhz": ("SM clock, mean", "MHz"),
    "power_mean_w": ("power, mean", "W"),
    "energy_j": ("energy", "J"),
    "energy_per_token_j": ("energy per output token", "J"),
    "cpu_percent": ("process CPU (100% = one core)", "pct"),
    "peak_rss_bytes": ("process RSS, peak so far", "bytes"),
}
COLUMNS = ["median", "mean", "stdev", "min", "p90", "p99", "max", "95% CI of median"]


def format_number(value: float) -> str:
    """About four significant digits, without exponent notation."""
    magnitude = abs(value)
    decimals = 3 if magnitude < 10 else 2 if magnitude < 100 else 1 if magnitude < 1000 else 0
    return f"{value:.{decimals}f}"


def _row(label: str, summary: Summary, unit: str) -> list[str]:
    shown, scale = DISPLAY_UNIT.get(unit, (unit, 1.0))
    cells = [summary.median, summary.mean, summary.stdev, summary.min, summary.p90, summary.p99, summary.max]
    ci = f"{format_number(summary.ci95_low * scale)} - {format_number(summary.ci95_high * scale)}"
    return [f"{label} ({shown})"] + [format_number(v * scale) for v in cells] + [ci]


def _table(title: str, first: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    return table


def run_header(run: Run) -> str:
    """One line saying what was measured."""
    c = run.config
    measured = run.measured
    tokens = sorted({n for r in measured for n in r.tokens_per_sequence})
    span = f"{tokens[0]}..{tokens[-1]}" if len(tokens) > 1 else (str(tokens[0]) if tokens else "-")
    backend = measured[0].backend if measured else "-"
    return (
        f"model {c.get('model', '?')} on {c.get('device', '?')} ({c.get('dtype', '?')}, timeline: {backend}) | "
        f"batch {c.get('batch_size', '?')} | prompt {c.get('prompt_tokens', '?')} tok | "
        f"output {span} tok/seq (max {c.get('max_new_tokens', '?')}) | {len(measured)} repeats"
        f" after {c.get('warmup', 0)} warm-up"
    )


def render_table(run: Run, file: IO[str] | None = None) -> None:
    """Print the metric, breakdown and telemetry tables of ``run``."""
    console = Console(file=file, width=140, highlight=False)
    summaries = summarize_requests(run.metrics())
    console.print(run_header(run))
    if run.interrupted:
        console.print(
            "[bold]interrupted:[/bold] only the repeats completed before the interruption are shown"
        )
    metrics = _table("Inference metrics (over repeats)", "metric")
    for name, label in HEADLINE.items():
        if name in summaries:
            metrics.add_row(*_row(label, summaries[name], METRICS[name][1]))
    console.print(metrics)

    breakdown = _table("Breakdown (per request)", "part")
    for name, label in BREAKDOWN.items():
        summary = summaries.get(name)
        if summary is None or (name == "vision" and summary.max == 0):
            continue
        breakdown.add_row(*_row(label, summary, METRICS[name][1]))
    console.print(breakdown)
    if "host_bound_share" not in summaries and run.measured:
        console.print(
            "host-bound share: not available on the host timeline (no device queue: CPU ops are synchronous)"
        )
    if run.telemetry is not None:
        _render_telemetry(run, console)


def _render_telemetry(run: Run, console: Console) -> None:
    telemetry = run.telemetry or {}
    per_request = [request_telemetry(telemetry, raw) for raw in run.measured]
    title = f"Telemetry (per request, {telemetry.get('kind')} sampler every {telemetry.get('interval_s', 0) * 1e3:.0f} ms"
    if telemetry.get("power_source"):
        title += f", {telemetry['power_source']} power"
    table = _table(title + ")", "measure")
    for name, (label, unit) in TELEMETRY.items():
        summary = summarize([getattr(t, name) for t in per_request])
        if summary is not None:
            table.add_row(*_row(label, summary, unit))
    if table.row_count:
        console.print(table)
    notes = [telemetry["reason"]] if telemetry.get("reason") else []
    notes += run_warnings(telemetry)
    for t in per_request:
        notes += ([f"energy: {t.energy_note}"] if t.energy_note else []) + [
            f"warning: {w}" for w in t.warnings
        ]
    for note, count in Counter(notes).items():
        console.print(note + (f" ({count} requests)" if count > 1 else ""))
