"""The summary of a run as plain rows: what the terminal table and the Markdown reporter both render.
Never imports torch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from llmprof.report.json_format import Run
from llmprof.roofline import ROOFLINE_METRICS, Roofline, si, summarize_roofline, verdict
from llmprof.stats import METRICS, Summary, summarize, summarize_requests
from llmprof.telemetry import requests_telemetry, run_warnings

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
# unit of a value -> (shown unit, scale)
DISPLAY_UNIT = {"s": ("ms", 1e3), "ratio": ("%", 100.0), "bytes": ("MiB", 1 / 2**20), "pct": ("%", 1.0)}
COLUMNS = ["median", "mean", "stdev", "min", "p90", "p99", "max", "95% CI of median"]
HOST_TIMELINE_NOTE = (
    "host-bound share: not available on the host timeline (no device queue: CPU ops are synchronous)"
)


@dataclass
class Section:
    """One table: a title, the name of its first column, and rows of formatted cells (see COLUMNS)."""

    title: str
    first: str
    rows: list[list[str]] = field(default_factory=list)


def format_number(value: float) -> str:
    """About four significant digits, without exponent notation."""
    magnitude = abs(value)
    decimals = 3 if magnitude < 10 else 2 if magnitude < 100 else 1 if magnitude < 1000 else 0
    return f"{value:.{decimals}f}"


def summary_row(label: str, summary: Summary, unit: str) -> list[str]:
    """A label with its display unit, then the COLUMNS of ``summary`` scaled to that unit."""
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
        f" after {c.get('warmup_calls', c.get('warmup', 0))} warm-up"
        + (" (auto: until steady)" if c.get("warmup") == "auto" else "")
    )


def summary_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The tables of ``run`` (metrics, breakdown, roofline, telemetry) and the notes and warnings that go below
    them."""
    summaries = summarize_requests(run.metrics())
    metrics = Section("Inference metrics (over repeats)", "metric")
    for name, label in HEADLINE.items():
        if name in summaries:
            metrics.rows.append(summary_row(label, summaries[name], METRICS[name][1]))
    breakdown = Section("Breakdown (per request)", "part")
    for name, label in BREAKDOWN.items():
        summary = summaries.get(name)
        if summary is not None and not (name == "vision" and summary.max == 0):
            breakdown.rows.append(summary_row(label, summary, METRICS[name][1]))
    sections, notes = [metrics, breakdown], []
    if run.interrupted:
        notes.append("interrupted: only the repeats completed before the interruption are shown")
    if "host_bound_share" not in summaries and run.measured:
        notes.append(HOST_TIMELINE_NOTE)
    if run.roofline is not None and run.measured:
        section, roofline_notes = _roofline_section(run)
        sections.append(section)
        notes += roofline_notes
    if run.telemetry is not None:
        section, telemetry_notes = _telemetry_section(run)
        sections.append(section)
        notes += telemetry_notes
    return sections, notes


def _roofline_section(run: Run) -> tuple[Section, list[str]]:
    roofline = Roofline.from_dict(run.roofline or {})
    shape, peaks = roofline.model, roofline.peaks
    analyses = run.roofline_analyses()
    section = Section(
        f"Roofline (per request; peaks: {si(peaks.bandwidth, 'B/s')} ({peaks.bandwidth_source}), "
        f"{si(peaks.flops, 'FLOP/s')} {peaks.dtype} ({peaks.flops_source}))",
        "measure",
    )
    summaries = summarize_roofline(analyses)
    for name, (_get, unit, label) in ROOFLINE_METRICS.items():
        if name in summaries:
            section.rows.append(summary_row(label, summaries[name], unit))
    model = (
        f"roofline model: {shape.parameters:,} parameters; a decode step reads {si(shape.decode_bytes(1, 0), 'B')}"
        f" at context 0, + {si(shape.kv_bytes_per_token, 'B')} of KV cache ({shape.cache_dtype}) per token of"
        f" context and sequence, and does {si(shape.decode_flops(1, 0), 'FLOP')} per token + attention;"
        f" peaks of {peaks.device}"
    )
    return section, [model, verdict(analyses)]


def _telemetry_section(run: Run) -> tuple[Section, list[str]]:
    telemetry = run.telemetry or {}
    per_request = requests_telemetry(telemetry, run.measured)
    title = f"Telemetry (per request, {telemetry.get('kind')} sampler every {(telemetry.get('interval_s') or 0) * 1e3:.0f} ms"
    if telemetry.get("power_source"):
        title += f", {telemetry['power_source']} power"
    section = Section(title + ")", "measure")
    for name, (label, unit) in TELEMETRY.items():
        summary = summarize([getattr(t, name) for t in per_request])
        if summary is not None:
            section.rows.append(summary_row(label, summary, unit))
    notes = [telemetry["reason"]] if telemetry.get("reason") else []
    notes += run_warnings(telemetry)
    for t in per_request:
        notes += ([f"energy: {t.energy_note}"] if t.energy_note else []) + [
            f"warning: {w}" for w in t.warnings
        ]
    counted = Counter(notes)
    return section, [note + (f" ({count} requests)" if count > 1 else "") for note, count in counted.items()]
