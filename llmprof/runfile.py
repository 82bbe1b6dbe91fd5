"""The run file: the :class:`Run` model, its versioned JSON format, validation on load, and the atomic write.

A run file holds every raw timeline plus the run's configuration, environment, telemetry and roofline inputs;
every metric is recomputed from the raw timelines on load, so a file stays useful when metrics are added.
A format change that old files cannot be read through bumps ``FORMAT_VERSION`` and adds the migration of the
older documents here (version 1 is the only format so far). Never imports torch.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmprof.analysis.metrics import RequestMetrics, compute_request
from llmprof.analysis.record import RawRequest
from llmprof.analysis.roofline import RequestRoofline, Roofline
from llmprof.errors import RunFormatError

FORMAT_NAME = "llmprof-run"
FORMAT_VERSION = 1


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
    interrupted: bool = False
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat())

    @property
    def measured(self) -> list[RawRequest]:
        """The repeats that count (warm-ups excluded)."""
        return [r for r in self.records if not r.warmup]

    def metrics(self) -> list[RequestMetrics]:
        """Metrics of the measured repeats, in order."""
        return [compute_request(r) for r in self.measured]

    def roofline_analyses(self) -> list[RequestRoofline]:
        """The measured repeats against the roofline, in order; empty when the run has no roofline."""
        if self.roofline is None:
            return []
        roofline = Roofline.from_dict(self.roofline)
        return [roofline.analyze(m) for m in self.metrics()]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the run (see :func:`dump_run`)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": self.created,
            "interrupted": self.interrupted,
            "config": self.config,
            "environment": self.environment,
            "telemetry": self.telemetry,
            "roofline": self.roofline,
            "requests": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Parse a run document; raises RunFormatError if it is not one this version can read."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise RunFormatError("not an llmprof run (no 'format': 'llmprof-run' field)")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise RunFormatError(
                f"run format version {version} is newer than this llmprof reads ({FORMAT_VERSION}); upgrade llmprof"
            )
        try:
            records = [RawRequest.from_dict(r) for r in data["requests"]]
            roofline = data.get("roofline")
            if roofline is not None:
                Roofline.from_dict(roofline)  # fails here, not in a reporter, when malformed
            telemetry = data.get("telemetry")
            if telemetry is not None and not isinstance(telemetry, dict):
                raise TypeError(f"'telemetry' is a {type(telemetry).__name__}, not an object")
            for i, record in enumerate(records):
                if not record.warmup:
                    try:
                        compute_request(record)
                    except ValueError as exc:
                        raise ValueError(f"request {i}: {exc}") from None
            return cls(
                config=dict(data.get("config", {})),
                environment=dict(data.get("environment", {})),
                records=records,
                telemetry=telemetry,
                roofline=roofline,
                interrupted=bool(data.get("interrupted", False)),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RunFormatError(f"malformed llmprof run: {type(exc).__name__}: {exc}") from exc


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never a truncated file. A symlink is
    followed (its target is replaced); a target that is not a regular file (a pipe, /dev/stdout) is written
    directly. The file gets the usual permissions (0666 less the umask), not the temporary file's 0600."""
    payload = data.encode() if isinstance(data, str) else data
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        regular = True  # a new file
    if not regular:  # a pipe, a terminal, /dev/stdout: streamed (its real path is no place for a rename)
        with open(path, "wb") as f:
            f.write(payload)
        return
    target = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_run(run: Run) -> str:
    """``run`` as JSON text."""
    return json.dumps(run.to_dict(), indent=1) + "\n"


def save_run(run: Run, path: str | os.PathLike[str]) -> None:
    """Save ``run`` as JSON at ``path``, atomically."""
    write_atomic(path, dump_run(run))


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run saved by :func:`save_run`; raises RunFormatError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise RunFormatError(f"{path}: no such file") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFormatError(f"{path}: not valid JSON (truncated?): {exc}") from exc
    return Run.from_dict(data)
