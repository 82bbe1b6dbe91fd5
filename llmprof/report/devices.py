"""The GPUs of a device_map model as a table: each GPU's stage of the prefill and of a decode forward, and its
share of the decode forward. Never imports torch."""

from __future__ import annotations

from llmprof.analysis.devices import device_stages
from llmprof.report.summary import Section, format_number
from llmprof.runfile import Run

COLUMNS = ["prefill stage (ms)", "decode stage (ms)", "share of a decode forward"]
NOTE = (
    "a GPU's stage runs from the moment the GPUs before it were done with the forward to the moment it was"
    " done too; where the host is the bottleneck (host-bound share above), every GPU is done soon after the"
    " host returns and the first stage holds almost all of the forward"
)


def devices_sections(run: Run) -> tuple[list[Section], list[str]]:
    """The devices table and its note; none for a model on one device."""
    stages = device_stages(run.records)
    if not stages:
        return [], []
    section = Section(
        f"Devices ({len(stages)} GPUs, one process; medians over the measured requests)",
        "device",
        columns=COLUMNS,
    )
    for s in stages:
        section.rows.append(
            [
                s.device,
                "-" if s.prefill_ms is None else format_number(s.prefill_ms),
                "-" if s.decode_ms is None else format_number(s.decode_ms),
                "-" if s.decode_share is None else f"{100 * s.decode_share:.0f}%",
            ]
        )
    return [section], [NOTE]
