"""CSV: one row per request with every metric, or one row per decode step; each column's name carries its
unit (``ttft_s``, ``tps_tok_per_s``, ``mbu_ratio``: ratios as 0..1), warm-ups flagged in ``warmup``; every
value written by :func:`cell` (floats rounded to 1e-9), as in the kernel and sweep CSVs. Never imports
torch."""

from __future__ import annotations

import csv
from typing import IO, Any

from llmprof.analysis import registry
from llmprof.analysis.registry import ENGINE, REQUEST, ROOFLINE, SPECULATIVE, STEP_METRICS
from llmprof.analysis.roofline import Roofline
from llmprof.analysis.telemetry import RequestTelemetry, requests_telemetry
from llmprof.runfile import Run

# the whole per-request telemetry record (its notes and source too), in its own field order
TELEMETRY_FIELDS = [
    name for name in RequestTelemetry.__dataclass_fields__ if name not in ("samples", "warnings")
]
# ... as CSV columns: a metric's with its unit (gpu_util_mean_pct), the others as they are
TELEMETRY_COLUMNS = {
    name: registry.BY_NAME[name].column if name in registry.BY_NAME else name for name in TELEMETRY_FIELDS
}
STEP_KEYS = ["request", "warmup", "step", "kv_length"]


DECIMALS = 9  # a float cell's rounding: 1 ns of a time in seconds, far below what a rate or a ratio resolves


def cell(value: Any) -> Any:
    """A value as every llmprof CSV writes it: a float rounded to DECIMALS places, then its shortest repr that
    reads back the same (``0.052282903``, not ``0.052282903000000006``; ``nan``, ``inf`` as they are); None
    empty; an int or a string as it is."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(float(value), DECIMALS))
    return value


def _write(out: IO[str], header: list[str], rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(v) for k, v in row.items()})


def _roofline(run: Run) -> Roofline | None:
    return Roofline.from_dict(run.roofline) if run.roofline is not None else None


def render(run: Run, out: IO[str]) -> None:
    """One row per recorded request, warm-ups included (flagged)."""
    # an engine's metrics (the queue time) only in a run with an engine's requests: other CSVs stay as they were
    engine = registry.metrics(ENGINE) if any(raw.engine is not None for raw in run.records) else []
    request_metrics = registry.metrics(REQUEST) + engine
    roofline_metrics = registry.metrics(ROOFLINE)
    header = ["request", "warmup", "batch_size", "prompt_tokens", "tokens_per_sequence"]
    header += [m.column for m in request_metrics]
    if run.telemetry is not None:
        header += list(TELEMETRY_COLUMNS.values())
    roofline = _roofline(run)
    if roofline is not None:
        header += [m.column for m in roofline_metrics]
    telemetry = requests_telemetry(run.telemetry, run.records) if run.telemetry is not None else None
    rows = []
    for i, raw in enumerate(run.records):
        m = run.request_metrics(raw)
        row: dict[str, Any] = {
            "request": i,
            "warmup": int(raw.warmup),
            "batch_size": raw.batch_size,
            "prompt_tokens": raw.prompt_tokens,
            "tokens_per_sequence": ";".join(map(str, raw.tokens_per_sequence)),
        }
        row.update({metric.column: metric.get(m) for metric in request_metrics})
        if telemetry is not None:
            row.update({column: getattr(telemetry[i], name) for name, column in TELEMETRY_COLUMNS.items()})
        if roofline is not None:
            analysis = roofline.analyze(m)
            row.update({metric.column: metric.get(analysis) for metric in roofline_metrics})
        rows.append(row)
    _write(out, header, rows)


def render_steps(run: Run, out: IO[str]) -> None:
    """One row per decode step (k >= 2) of every request: its interval and the parts of it (and, when the run
    has a roofline, the step's floor and MBU; with assisted generation, its tokens and draft time)."""
    roofline = _roofline(run)
    shown = {REQUEST} | ({ROOFLINE} if roofline is not None else set())
    if any(raw.tokens_per_step for raw in run.records):
        shown.add(SPECULATIVE)
    columns = [s for s in STEP_METRICS if s.source in shown]
    rows = []
    for i, raw in enumerate(run.records):
        m = run.request_metrics(raw)
        sources = {
            REQUEST: m,
            SPECULATIVE: m,
            ROOFLINE: roofline.analyze(m) if roofline is not None else None,
        }
        for j in range(len(m.itl)):
            step = j + 2
            row = {
                "request": i,
                "warmup": int(raw.warmup),
                "step": step,
                "kv_length": raw.prompt_tokens + step - 1,
            }
            row.update({s.column: s.get(sources[s.source], j) for s in columns})
            rows.append(row)
    _write(out, STEP_KEYS + [s.column for s in columns], rows)
