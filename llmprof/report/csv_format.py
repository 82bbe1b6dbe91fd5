"""CSV: one row per request with every metric (seconds, tokens per second), or one row per decode step.
Never imports torch."""

from __future__ import annotations

import csv
import io
from typing import Any

from llmprof.metrics import compute_request
from llmprof.report.json_format import Run
from llmprof.roofline import ROOFLINE_METRICS, Roofline
from llmprof.stats import METRICS
from llmprof.telemetry import RequestTelemetry, requests_telemetry

TELEMETRY_FIELDS = [
    name for name in RequestTelemetry.__dataclass_fields__ if name not in ("samples", "warnings")
]
STEP_FIELDS = [
    "request",
    "warmup",
    "step",
    "kv_length",
    "itl_s",
    "forward_s",
    "sampling_s",
    "host_gap_s",
    "host_bound",
]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision, round-trips
    return value


def _write(header: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def render_requests_csv(run: Run) -> str:
    """One row per recorded request, warm-ups included (flagged)."""
    header = ["request", "warmup", "batch_size", "prompt_tokens", "tokens_per_sequence", *METRICS]
    if run.telemetry is not None:
        header += TELEMETRY_FIELDS
    roofline = Roofline.from_dict(run.roofline) if run.roofline is not None else None
    if roofline is not None:
        header += list(ROOFLINE_METRICS)
    telemetry = requests_telemetry(run.telemetry, run.records) if run.telemetry is not None else None
    rows = []
    for i, raw in enumerate(run.records):
        m = compute_request(raw)
        row: dict[str, Any] = {
            "request": i,
            "warmup": int(raw.warmup),
            "batch_size": raw.batch_size,
            "prompt_tokens": raw.prompt_tokens,
            "tokens_per_sequence": ";".join(map(str, raw.tokens_per_sequence)),
        }
        row.update({name: get(m) for name, (get, _unit) in METRICS.items()})
        if telemetry is not None:
            row.update({name: getattr(telemetry[i], name) for name in TELEMETRY_FIELDS})
        if roofline is not None:
            analysis = roofline.analyze(m)
            row.update({name: get(analysis) for name, (get, _unit, _label) in ROOFLINE_METRICS.items()})
        rows.append(row)
    return _write(header, rows)


def render_steps_csv(run: Run) -> str:
    """One row per decode step (k >= 2) of every request: its interval and the parts of it (and, when the run
    has a roofline, the step's floor and MBU)."""
    roofline = Roofline.from_dict(run.roofline) if run.roofline is not None else None
    rows = []
    for i, raw in enumerate(run.records):
        m = compute_request(raw)
        b = m.breakdown
        analysis = roofline.analyze(m) if roofline is not None else None
        for j, itl in enumerate(m.itl):
            step = j + 2
            row = {
                "request": i,
                "warmup": int(raw.warmup),
                "step": step,
                "kv_length": raw.prompt_tokens + step - 1,
                "itl_s": itl,
                "forward_s": b.step_forward[j],
                "sampling_s": b.step_sampling[j],
                "host_gap_s": b.step_host_gap[j],
                "host_bound": "" if b.step_host_bound is None else int(b.step_host_bound[j]),
            }
            if analysis is not None:
                row.update(floor_s=analysis.step_floor[j], mbu=analysis.step_mbu[j])
            rows.append(row)
    return _write(STEP_FIELDS + (["floor_s", "mbu"] if roofline is not None else []), rows)
