"""The :class:`Run` model: one profiling run, its metrics computed once per record, and its JSON document
(docs/architecture.md, "Data flow"). Never imports torch."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from llmprof.analysis import registry
from llmprof.analysis.fields import MALFORMED
from llmprof.analysis.kernels import KernelCapture
from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.ranks import RankTimeline
from llmprof.analysis.record import RawRequest
from llmprof.analysis.roofline import RequestRoofline, Roofline
from llmprof.analysis.stats import Summary
from llmprof.errors import RunFormatError
from llmprof.runfile.marks import encode_marks
from llmprof.runfile.validation import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_config,
    check_document,
    check_physical,
)


@dataclass
class Run:
    """One profiling run: its configuration, environment and every recorded request (warm-ups included)."""

    config: dict[str, Any]
    environment: dict[str, Any]
    records: list[RawRequest] = field(default_factory=list)
    telemetry: dict[str, Any] | None = None  # a sampler snapshot (llmprof.capture.sampling), None when off
    roofline: dict[str, Any] | None = (
        None  # llmprof.analysis.roofline.Roofline.to_dict(); None when not known
    )
    kernels: KernelCapture | None = None  # the kernel-profiled call after the repeats (run --kernels)
    # several ranks of one job (torchrun): every rank's timeline, rank 0 first (its records are ``records``)
    ranks: list[RankTimeline] | None = None
    # an engine's steps (vLLM): columns of one row per step (llmprof.analysis.engine_steps.COLUMNS); None without
    engine_steps: dict[str, list[Any]] | None = None
    interrupted: bool = False
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat())
    # each record's metrics, computed once (records are not changed once recorded): id -> (record, metrics)
    _computed: dict[int, tuple[RawRequest, RequestMetrics]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # the summaries of the measured records they were computed from: (records, summaries)
    _summaries: tuple[list[RawRequest], dict[str, Summary]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def measured(self) -> list[RawRequest]:
        """The repeats that count (warm-ups excluded)."""
        return [r for r in self.records if not r.warmup]

    def metrics(self) -> list[RequestMetrics]:
        """Metrics of the measured repeats, in order (each computed once per run)."""
        return [self.request_metrics(r) for r in self.measured]

    def summaries(self) -> dict[str, Summary]:
        """Every request metric (an engine's too) summarized over the measured repeats: computed once for as long
        as the measured records stay the same (every format of one render, and the next, share them)."""
        measured = self.measured
        cached = self._summaries
        if (
            cached is None
            or len(cached[0]) != len(measured)
            or any(a is not b for a, b in zip(cached[0], measured))
        ):
            metrics = self.metrics()
            summaries = registry.summaries(metrics) | registry.summaries(metrics, registry.ENGINE)
            self._summaries = cached = (measured, summaries)
        return cached[1]

    def request_metrics(self, record: RawRequest) -> RequestMetrics:
        """``compute_request(record)``, computed once per record of this run."""
        hit = self._computed.get(id(record))
        if hit is None or hit[0] is not record:
            hit = self._computed[id(record)] = (record, compute_request(record))
        return hit[1]

    def roofline_analyses(self) -> list[RequestRoofline]:
        """The measured repeats against the roofline, in order; empty when the run has no roofline."""
        if self.roofline is None:
            return []
        roofline = Roofline.from_dict(self.roofline)
        return [roofline.analyze(m) for m in self.metrics()]

    def to_dict(self, compact: bool = False) -> dict[str, Any]:
        """The JSON document of the run (see :func:`dump_run`); ``compact``: each request's marks encoded
        (:data:`~llmprof.runfile.marks.MARKS_ENCODING`), else plain arrays."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": self.created,
            "interrupted": self.interrupted,
            "config": self.config,
            "environment": self.environment,
            "telemetry": self.telemetry,
            "roofline": self.roofline,
            "requests": [request_dict(r, compact) for r in self.records],
            **({"kernels": self.kernels.to_dict()} if self.kernels is not None else {}),
            **(
                {"ranks": [_rank_dict(t, t.rank == self.ranks[0].rank, compact) for t in self.ranks]}
                if self.ranks
                else {}
            ),
            **({"engine_steps": self.engine_steps} if self.engine_steps is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Parse a run document, validated whole (:func:`check_document`); raises RunFormatError naming the
        first field that is wrong. ``data`` is not changed (its compact marks are decoded into the checked
        copy)."""
        data = check_document(data)
        records = [RawRequest.from_dict(r) for r in data["requests"]]
        check_config(data.get("config", {}), records)
        computed = {id(r): (r, _physical(r, f"requests[{i}]")) for i, r in enumerate(records)}
        run = cls(
            config=dict(data.get("config", {})),
            environment=dict(data.get("environment", {})),
            records=records,
            telemetry=data.get("telemetry"),
            roofline=data.get("roofline"),
            kernels=KernelCapture.from_dict(data["kernels"]) if data.get("kernels") is not None else None,
            ranks=_ranks(data["ranks"], records) if data.get("ranks") else None,
            engine_steps=dict(data["engine_steps"]) if data.get("engine_steps") is not None else None,
            interrupted=data.get("interrupted", False),
            created=data.get("created", ""),
        )
        run._computed = computed
        return run


def request_dict(record: RawRequest, compact: bool) -> dict[str, Any]:
    """A request's entry in the file; ``compact``: its marks encoded (:data:`~llmprof.runfile.marks.MARKS_ENCODING`)."""
    data = record.to_dict()
    if compact:
        data["marks"] = encode_marks(data["marks"])
    return data


def _rank_dict(timeline: RankTimeline, first: bool, compact: bool) -> dict[str, Any]:
    """A rank's entry in the file: the first rank's records are the run's ``requests``, not repeated."""
    entry = {
        "rank": timeline.rank,
        "hostname": timeline.hostname,
        "offset_ns": timeline.offset_ns,
        "uncertainty_ns": timeline.uncertainty_ns,
    }
    return entry if first else {**entry, "requests": [request_dict(r, compact) for r in timeline.records]}


def _ranks(entries: list[dict[str, Any]], records: list[RawRequest]) -> list[RankTimeline]:
    """The ranks' timelines of a checked document: the first has the run's records, the others their own."""
    first = entries[0]
    out = [
        RankTimeline(first["rank"], first["hostname"], first["offset_ns"], first["uncertainty_ns"], records)
    ]
    for i, e in enumerate(entries[1:], 1):
        timeline = RankTimeline(e["rank"], e["hostname"], e["offset_ns"], e["uncertainty_ns"])
        for j, request in enumerate(e["requests"]):
            timeline.records.append(RawRequest.from_dict(request))
            _physical(timeline.records[-1], f"ranks[{i}].requests[{j}]")
        out.append(timeline)
    return out


def _physical(record: RawRequest, where: str) -> RequestMetrics:
    """``record``'s metrics if they can be computed and are physical; RunFormatError naming ``where`` if not."""
    try:
        m = compute_request(record)
    except (ValueError, ZeroDivisionError) as exc:
        raise RunFormatError(f"{MALFORMED}{where}: {exc}") from None
    check_physical(m, where)
    return m
