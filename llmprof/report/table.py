"""Terminal tables of a run: the four metrics with their spread, and the breakdown. Never imports torch."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.table import Table

from llmprof.report.json_format import Run
from llmprof.stats import METRICS, Summary, summarize_requests

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


DISPLAY_UNIT = {"s": ("ms", 1e3), "ratio": ("%", 100.0)}  # unit of a metric -> (shown unit, scale)


def format_number(value: float) -> str:
    """About four significant digits, without exponent notation."""
    magnitude = abs(value)
    decimals = 3 if magnitude < 10 else 2 if magnitude < 100 else 1 if magnitude < 1000 else 0
    return f"{value:.{decimals}f}"


def _row(name: str, label: str, summary: Summary) -> list[str]:
    unit = METRICS[name][1]
    shown, scale = DISPLAY_UNIT.get(unit, (unit, 1.0))
    cells = [summary.median, summary.mean, summary.stdev, summary.min, summary.p90, summary.p99, summary.max]
    ci = f"{format_number(summary.ci95_low * scale)} - {format_number(summary.ci95_high * scale)}"
    return [f"{label} ({shown})"] + [format_number(v * scale) for v in cells] + [ci]


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
    """Print the metric and breakdown tables of ``run``."""
    console = Console(file=file, width=140, highlight=False)
    summaries = summarize_requests(run.metrics())
    console.print(run_header(run))
    if run.interrupted:
        console.print(
            "[bold]interrupted:[/bold] only the repeats completed before the interruption are shown"
        )
    columns = ["metric", "median", "mean", "stdev", "min", "p90", "p99", "max", "95% CI of median"]
    metrics = Table(title="Inference metrics (over repeats)", title_justify="left")
    for i, col in enumerate(columns):
        metrics.add_column(col, justify="left" if i == 0 else "right")
    for name, label in HEADLINE.items():
        if name in summaries:
            metrics.add_row(*_row(name, label, summaries[name]))
    console.print(metrics)

    breakdown = Table(title="Breakdown (per request)", title_justify="left")
    for i, col in enumerate(columns):
        breakdown.add_column(col if i else "part", justify="left" if i == 0 else "right")
    for name, label in BREAKDOWN.items():
        summary = summaries.get(name)
        if summary is None or (name == "vision" and summary.max == 0):
            continue
        breakdown.add_row(*_row(name, label, summary))
    console.print(breakdown)
    if "host_bound_share" not in summaries and run.measured:
        console.print(
            "host-bound share: not available on the host timeline (no device queue: CPU ops are synchronous)"
        )
