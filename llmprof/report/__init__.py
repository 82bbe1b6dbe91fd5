"""Reporters: one module per output format. They never import torch or NVML, so a saved run can be rendered
on any machine."""

from __future__ import annotations

import io

from llmprof.report.json_format import Run

FORMATS = ("table", "md", "csv", "json", "trace", "plot")
BINARY_FORMATS = ("plot",)


def render(run: Run, fmt: str, per_step: bool = False) -> str | bytes:
    """``run`` in format ``fmt`` (one of FORMATS): text, or PNG bytes for ``plot``. ``per_step``: CSV rows
    per decode step instead of per request."""
    if fmt == "table":
        from llmprof.report.table import render_table

        out = io.StringIO()
        render_table(run, file=out)
        return out.getvalue()
    if fmt == "md":
        from llmprof.report.markdown import render_markdown

        return render_markdown(run)
    if fmt == "csv":
        from llmprof.report.csv_format import render_requests_csv, render_steps_csv

        return render_steps_csv(run) if per_step else render_requests_csv(run)
    if fmt == "json":
        from llmprof.report.json_format import dump_run

        return dump_run(run)
    if fmt == "trace":
        from llmprof.report.trace import render_trace

        return render_trace(run)
    if fmt == "plot":
        from llmprof.report.plot import render_plot

        return render_plot(run)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
