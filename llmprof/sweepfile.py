"""A sweep: one run per point of a grid (batch, prompt length, tokens to generate ...), in one versioned JSON
file. Each point keeps its whole run (re-renderable alone) or, when it did not run, its status and one-line
reason. Saved after every point, atomically, so an interrupted sweep keeps every finished point and
``sweep --resume`` measures only the rest."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmprof.analysis.grid import point_key
from llmprof.errors import RunFormatError, UsageError
from llmprof.runfile import CONFIG_MINIMUM, MALFORMED, Run, check_config, load_with, write_atomic

FORMAT_NAME = "llmprof-sweep"
FORMAT_VERSION = 1
OK, FAILED, SKIPPED, REFUSED = "ok", "failed", "skipped", "refused"
STATUSES = (OK, FAILED, SKIPPED, REFUSED)
# the numeric axes, each with its key in a point's run config (whose own check compares it to the requests)
CONFIG_KEYS = {
    "batch_size": "batch_size",
    "prompt_len": "prompt_tokens",
    "depth": "depth",
    "max_new_tokens": "max_new_tokens",
}


@dataclass
class SweepPoint:
    """One point: its axes' values, and its run (``ok``) or why it has none (failed, skipped after an out of
    memory at a smaller batch, refused by the memory estimate)."""

    params: dict[str, Any]
    status: str = OK
    reason: str | None = None
    run: Run | None = None

    @property
    def key(self) -> str:
        """The same point always gives the same key (whatever the order of its axes)."""
        return point_key(self.params)

    @property
    def label(self) -> str:
        """The point as shown: its axes' values in the sweep's order."""
        return " ".join(f"{name}={value}" for name, value in self.params.items())


@dataclass
class Sweep:
    """The axes, what every point shares (``config``: model, device, repeats ...), and the points so far."""

    axes: dict[str, list[Any]]
    config: dict[str, Any] = field(default_factory=dict)
    points: list[SweepPoint] = field(default_factory=list)
    interrupted: bool = False
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def measured(self) -> list[SweepPoint]:
        """The points that ran."""
        return [p for p in self.points if p.status == OK and p.run is not None]

    def select(self, spec: str) -> SweepPoint:
        """The one measured point matching ``spec`` (``batch_size=4,depth=256``: every axis named must have
        that value; its label, space-separated, works too); UsageError naming the candidates otherwise."""
        wanted: dict[str, str] = {}
        for part in spec.replace(",", " ").split():
            name, sep, value = part.partition("=")
            if not sep or name not in self.axes:
                raise UsageError(f"--point {spec!r}: AXIS=VALUE pairs, with AXIS in {', '.join(self.axes)}")
            wanted[name] = value
        if not wanted:
            raise UsageError(f"--point {spec!r}: AXIS=VALUE pairs, with AXIS in {', '.join(self.axes)}")
        found = [p for p in self.points if all(str(p.params.get(k)) == v for k, v in wanted.items())]
        if len(found) != 1:
            candidates = found or self.points
            some = "; ".join(p.label for p in candidates[:6]) + (" ..." if len(candidates) > 6 else "")
            what = (
                "matches no point: the sweep has"
                if not found
                else f"matches {len(found)} points: name one of"
            )
            raise UsageError(f"--point {spec!r} {what} {some}")
        point = found[0]
        if point.run is None:
            raise UsageError(f"point {point.label} has no run: {point.status} ({point.reason})")
        return point

    def record(self, point: SweepPoint) -> None:
        """Add ``point``, replacing an earlier entry of the same point (a retried failure)."""
        self.points = [p for p in self.points if p.key != point.key] + [point]

    def to_dict(self, compact: bool = False) -> dict[str, Any]:
        """The JSON document of the sweep; ``compact``: its runs' marks encoded (as in a run file)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": self.created,
            "interrupted": self.interrupted,
            "axes": self.axes,
            "config": self.config,
            "points": [
                {
                    "params": p.params,
                    "status": p.status,
                    "reason": p.reason,
                    "run": None if p.run is None else p.run.to_dict(compact),
                }
                for p in self.points
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Sweep:
        """Validate and build; raises RunFormatError naming the first field that is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise RunFormatError(f"not an llmprof sweep (no 'format': '{FORMAT_NAME}' field)")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise RunFormatError(f"sweep format version {version!r:.20} is not one this llmprof reads (1)")
        axes, config, points = data.get("axes"), data.get("config", {}), data.get("points")
        if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
            raise RunFormatError("axes: an object of non-empty lists is needed")
        if not isinstance(config, dict):
            raise RunFormatError("config: an object is needed")
        if not isinstance(points, list):
            raise RunFormatError("points: a list is needed")
        for name, values in axes.items():
            for value in values:
                _axis_value(name, value, f"axes.{name}")
            if len(set(values)) != len(values):
                raise RunFormatError(f"axes.{name}: a value is listed twice")
        sweep = cls(axes, config, interrupted=data.get("interrupted") is True)
        if isinstance(data.get("created"), str):
            sweep.created = data["created"]
        seen: dict[str, int] = {}
        for i, item in enumerate(points):
            point = _point(item, axes, f"points[{i}]")
            if point.key in seen:
                raise RunFormatError(
                    f"points[{i}] ({point.label}): the same point as points[{seen[point.key]}]"
                )
            seen[point.key] = i
            sweep.points.append(point)
        return sweep


def _axis_value(name: str, value: Any, where: str) -> None:
    """A numeric axis' value is an integer at least its minimum (batch >= 1, depth >= 0); another's (a kernel
    swap's) a string."""
    minimum = CONFIG_MINIMUM.get(CONFIG_KEYS.get(name, ""))
    if minimum is None:
        if not isinstance(value, str):
            raise RunFormatError(f"{where}: a string is needed, not {value!r:.40}")
    elif isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 2**63 - 1:
        raise RunFormatError(f"{where}: an integer of at least {minimum} is needed, not {value!r:.40}")


def _point(item: Any, axes: dict[str, list[Any]], where: str) -> SweepPoint:
    """One point, its values those of the axes and, where it ran, those of its run's config and requests."""
    if not isinstance(item, dict):
        raise RunFormatError(f"{where}: an object is needed")
    params, status, reason, run = (item.get(k) for k in ("params", "status", "reason", "run"))
    if not isinstance(params, dict) or set(params) != set(axes):
        raise RunFormatError(f"{where}.params: one value per axis ({', '.join(sorted(axes))}) is needed")
    for name, value in params.items():
        _axis_value(name, value, f"{where}.params.{name}")
        if value not in axes[name]:
            raise RunFormatError(
                f"{where} ({SweepPoint(params).label}): params.{name}: {value} is not a value of its axis"
            )
    if status not in STATUSES:
        raise RunFormatError(f"{where}.status: one of {', '.join(STATUSES)} is needed, not {status!r:.40}")
    if reason is not None and not isinstance(reason, str):
        raise RunFormatError(f"{where}.reason: a string or null is needed")
    if (run is None) == (status == OK):
        raise RunFormatError(
            f"{where}.run: a point {'that ran needs' if status == OK else 'that did not run has no'} run"
        )
    try:
        point = SweepPoint(params, status, reason, None if run is None else Run.from_dict(run))
    except RunFormatError as exc:
        raise RunFormatError(f"{where}.run: {exc}") from None
    if point.run is not None:
        _check_run(point, point.run, f"{where} ({point.label})")
    return point


def _check_run(point: SweepPoint, run: Run, where: str) -> None:
    """The point's axis values against its run: its config (where it holds them) and its requests."""
    config = run.config
    if "sweep_point" in config and config["sweep_point"] != point.params:
        raise RunFormatError(
            f"{where}: params differ from its run's config.sweep_point {config['sweep_point']}"
        )
    claimed = {CONFIG_KEYS[name]: value for name, value in point.params.items() if name in CONFIG_KEYS}
    for key, value in claimed.items():
        if key in config and config[key] != value:
            name = next(n for n, k in CONFIG_KEYS.items() if k == key)
            raise RunFormatError(
                f"{where}: params.{name}: {value}, but its run's config.{key} is {config[key]}"
            )
    try:
        check_config(claimed, run.records, "params", {key: name for name, key in CONFIG_KEYS.items()})
    except RunFormatError as exc:
        raise RunFormatError(f"{where}: {str(exc).removeprefix(MALFORMED)}") from None


def save_sweep(sweep: Sweep, path: str | os.PathLike[str]) -> None:
    """Save ``sweep`` as JSON at ``path``, atomically."""
    write_atomic(path, json.dumps(sweep.to_dict(compact=True), indent=1) + "\n")


def is_sweep(data: Any) -> bool:
    """Whether a loaded document is a sweep (rather than a run)."""
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def load_sweep(path: str | os.PathLike[str]) -> Sweep:
    """Load a sweep saved by :func:`save_sweep`; raises RunFormatError with a one-line reason."""
    return load_with(path, Sweep.from_dict)


def load_document(path: str | os.PathLike[str]) -> Run | Sweep:
    """The run or the sweep saved at ``path``; raises RunFormatError with a one-line reason."""
    return load_with(path, lambda data: Sweep.from_dict(data) if is_sweep(data) else Run.from_dict(data))
