"""The summary of a run as plain rows: what the terminal table and the Markdown reporter both render.
Never imports torch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from llmprof.analysis import registry
from llmprof.analysis.config_keys import shown, value
from llmprof.analysis.noise import noise_warnings
from llmprof.analysis.registry import ROOFLINE, SECTION_BREAKDOWN, SECTION_METRICS, TELEMETRY
from llmprof.analysis.roofline import Roofline, si, verdict
from llmprof.analysis.stats import Summary
from llmprof.analysis.telemetry import RequestTelemetry, requests_telemetry, run_warnings
from llmprof.runfile import Run

COLUMNS = ["median", "mean", "stdev", "min", "p90", "p99", "max", "95% CI of median"]
HOST_TIMELINE_NOTE = (
    "host-bound share: not available on the host timeline (no device queue: CPU ops are synchronous)"
)


@dataclass
class Section:
    """One table: a title, the name of its first column, and rows of formatted cells: COLUMNS (a summary), or
    ``columns`` of its own (a kernel table)."""

    title: str
    first: str
    rows: list[list[str]] = field(default_factory=list)
    columns: list[str] | None = None


def format_number(value: float) -> str:
    """About four significant digits, without exponent notation."""
    magnitude = abs(value)
    decimals = 3 if magnitude < 10 else 2 if magnitude < 100 else 1 if magnitude < 1000 else 0
    return f"{value:.{decimals}f}"


def summary_row(label: str, summary: Summary, unit: str) -> list[str]:
    """A label with its display unit, then the COLUMNS of ``summary`` scaled to that unit."""
    shown, scale = registry.display(unit)
    cells = [summary.median, summary.mean, summary.stdev, summary.min, summary.p90, summary.p99, summary.max]
    ci = f"{format_number(summary.ci95_low * scale)} - {format_number(summary.ci95_high * scale)}"
    return [f"{label} ({shown})"] + [format_number(v * scale) for v in cells] + [ci]


def _span(values: list[int]) -> str:
    """``5`` for one value, ``2..8`` for several, ``-`` for none."""
    values = sorted(set(values))
    return f"{values[0]}..{values[-1]}" if len(values) > 1 else (str(values[0]) if values else "-")


def served_by_engine(run: Run) -> bool:
    """Whether the run's records are an inference engine's requests (vLLM's), not generate() calls."""
    return any(raw.engine is not None for raw in run.records)


def _measured(run: Run) -> str:
    """``5 repeats``; for an engine's requests ``20 requests in 5 repeats`` (the config's repeats, left out
    where the run does not hold them)."""
    if not served_by_engine(run):
        return f"{len(run.measured)} repeats"
    repeats = value(run.config, "repeats_made", value(run.config, "repeats"))
    return f"{len(run.measured)} requests" + (f" in {repeats} repeats" if repeats is not None else "")


def run_header(run: Run) -> str:
    """One line saying what was measured: the run's config, else what its records hold; a part known to
    neither is left out (a Recorder loop has no max_new_tokens)."""
    c = run.config
    measured = run.measured
    backend = measured[0].backend if measured else "-"
    device, dtype, limit = value(c, "device"), value(c, "dtype"), value(c, "max_new_tokens")
    where = f"model {shown(c, 'model')}" + (f" on {device}" if device is not None else "")
    setup = ", ".join([*([dtype] if dtype is not None else []), f"timeline: {backend}"])
    batch = value(c, "batch_size", _span([r.batch_size for r in measured]))
    prompt = value(c, "prompt_tokens", _span([r.prompt_tokens for r in measured]))
    output = _span([n for r in measured for n in r.tokens_per_sequence])
    warmups = value(c, "warmup_calls", value(c, "warmup", sum(r.warmup for r in run.records)))
    return (
        f"{where} ({setup}) | batch {batch} | prompt {prompt} tok | output {output} tok/seq"
        + (f" (max {limit})" if limit is not None else "")
        + f" | {_measured(run)} after {warmups} warm-up"
        + (" (auto: until steady)" if value(c, "warmup") == "auto" else "")
    )


def _section(title: str, first: str, section: str, summaries: dict[str, Summary]) -> Section:
    """The rows of the registry's metrics of ``section`` that have a summary: headline metrics first."""
    table = Section(title, first)
    for metric in sorted(registry.metrics(section=section), key=lambda m: not m.headline):
        summary = summaries.get(metric.name)
        if summary is not None and not (metric.optional and summary.max == 0):
            table.rows.append(summary_row(metric.label, summary, metric.unit))
    return table


def summary_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The tables of ``run`` (metrics, breakdown, roofline, telemetry) and the notes and warnings that go below
    them."""
    summaries = run.summaries()
    metrics = _section("Inference metrics (over repeats)", "metric", SECTION_METRICS, summaries)
    breakdown = _section("Breakdown (per request)", "part", SECTION_BREAKDOWN, summaries)
    sections, notes = [metrics, breakdown], []
    if run.interrupted:
        notes.append("interrupted: only the repeats completed before the interruption are shown")
    telemetry = requests_telemetry(run.telemetry, run.measured) if run.telemetry is not None else []
    notes += measured_warnings(run, telemetry)
    if "host_bound_share" not in summaries and run.measured and not served_by_engine(run):
        notes.append(HOST_TIMELINE_NOTE)  # of generate()'s forwards
    if run.roofline is not None and run.measured:
        section, roofline_notes = _roofline_section(run)
        sections.append(section)
        notes += roofline_notes
    if run.telemetry is not None:
        section, telemetry_notes = _telemetry_section(run, telemetry)
        sections.append(section)
        notes += telemetry_notes
    return sections, notes


def _roofline_section(run: Run) -> tuple[Section, list[str]]:
    roofline = Roofline.from_dict(run.roofline or {})
    shape, peaks = roofline.model, roofline.peaks
    analyses = run.roofline_analyses()
    section = _section(
        f"Roofline (per request; peaks: {si(peaks.bandwidth, 'B/s')} ({peaks.bandwidth_source}), "
        f"{si(peaks.flops, 'FLOP/s')} {peaks.dtype} ({peaks.flops_source}))",
        "measure",
        ROOFLINE,
        registry.summaries(analyses, ROOFLINE),
    )
    model = (
        f"roofline model: {shape.parameters:,} parameters; a decode step reads {si(shape.decode_bytes(1, 0), 'B')}"
        f" at context 0, + {si(shape.kv_bytes_per_token, 'B')} of KV cache ({shape.cache_dtype}) per token of"
        f" context and sequence, and does {si(shape.decode_flops(1, 0), 'FLOP')} per token + attention;"
        f" peaks of {peaks.device}"
    )
    return section, [model, verdict(analyses)]


def _telemetry_section(run: Run, per_request: list[RequestTelemetry]) -> tuple[Section, list[str]]:
    telemetry = run.telemetry or {}
    title = f"Telemetry (per request, {telemetry.get('kind')} sampler every {(telemetry.get('interval_s') or 0) * 1e3:.0f} ms"
    if telemetry.get("power_source"):
        title += f", {telemetry['power_source']} power"
    section = _section(title + ")", "measure", TELEMETRY, registry.summaries(per_request, TELEMETRY))
    notes = [telemetry["reason"]] if telemetry.get("reason") else []
    notes += run_warnings(telemetry)
    for t in per_request:
        notes += ([f"energy: {t.energy_note}"] if t.energy_note else []) + [
            f"warning: {w}" for w in t.warnings
        ]
    return section, _counted(notes)


def measured_warnings(run: Run, telemetry: list[RequestTelemetry] | None = None) -> list[str]:
    """Every warning about the run's measured requests, as the run report, a sweep point's note and a comparison
    show it: each request's warning once ("warning: ...", with how many requests gave it), then the noise
    check's (:func:`~llmprof.analysis.noise.noise_warnings`; ``telemetry``: the requests' own, computed here
    when not given)."""
    if telemetry is None:
        telemetry = requests_telemetry(run.telemetry, run.measured) if run.telemetry is not None else []
    warnings = [f"warning: {w}" for w in _counted([w for raw in run.measured for w in raw.warnings])]
    return warnings + noise_warnings(run.metrics(), telemetry, served_by_engine(run))


def _counted(notes: list[str]) -> list[str]:
    """Each note once, with the number of requests it came from when more than one."""
    return [note + (f" ({count} requests)" if count > 1 else "") for note, count in Counter(notes).items()]
