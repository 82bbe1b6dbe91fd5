"""GPU telemetry through NVML (nvidia-ml-py): utilization, memory, clocks, power, temperature, clock-event
(throttle) reasons, and the total-energy counter read at request boundaries; plus the driver's own
high-rate samples of power, utilization and SM clock (``nvmlDeviceGetSamples``). Never imports torch.

Buffered samples. The driver keeps a ring buffer of samples it takes itself, every ~20 ms or faster,
far finer than our polling. Each probe fetches, per device and type, the samples newer than the last one
seen, and appends them to the columnar ``buffered`` series on the host CLOCK_MONOTONIC ns clock.
NVML stamps them with the CPU wall clock in microseconds; they are mapped with one offset
(``time.time_ns() - time.monotonic_ns()``) measured at :meth:`NvmlSampler.start`. The mapping is
uncertain by: the bracketing of the two clock reads (~1 us, recorded as ``buffered_clock``), the 1 us
resolution of the NVML stamps, any NTP slew of the wall clock during the run (at most 500 ppm, 0.5 ms
per second of run; usually far less) or step (then the mapping is off by the step: a step forward shows up
as samples in the future, which the plausibility check rejects), and which instant of its averaging
window the driver's stamp denotes (not documented; a few ms for power). Good enough to assign 20 ms
samples to requests, not to align them with single kernels.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from llmprof.capture.sampling.base import Sampler
from llmprof.capture.sampling.bounded import halve, series_ordinals
from llmprof.errors import TelemetryUnavailable

MIN_ENERGY_WINDOW_S = 0.1  # below this the energy counter's update period makes a reading noise

# field of the buffered series -> (NVML sampling type constant, its value in pynvml, divisor to our unit)
BUFFERED_TYPES = {
    "power_w": ("NVML_TOTAL_POWER_SAMPLES", 0, 1000.0),  # mW -> W
    "gpu_util": ("NVML_GPU_UTILIZATION_SAMPLES", 1, 1),  # %
    "sm_clock_mhz": ("NVML_PROCESSOR_CLK_SAMPLES", 5, 1),  # MHz
}
# NVML value type constant (and its value in pynvml) -> the member of the c_nvmlValue_t union to read
VALUE_MEMBERS = {
    ("NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
    ("NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
    ("NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
}
# the driver-buffered samples kept: up to this many times max_probes, then every other one of each device's
# field dropped and the stride doubled (as the probes are)
BUFFERED_PER_PROBE = 4
MAX_AHEAD_NS = 1_000_000_000  # a buffered sample stamped more than 1 s after now is not on the wall clock
MAX_BEHIND_NS = 86_400 * 1_000_000_000  # nor one whose newest sample is a day old (another time base)


def measure_wall_offset(tries: int = 5) -> tuple[int, int]:
    """``time.time_ns() - time.monotonic_ns()`` and its uncertainty in ns: the wall clock read between two
    monotonic reads, the tightest bracket of ``tries`` kept; half its width (at least 1 ns) is the
    uncertainty of this measurement alone (see the module docstring for the others)."""
    best_offset, best_width = 0, None
    for _ in range(tries):
        before = time.monotonic_ns()
        wall = time.time_ns()
        after = time.monotonic_ns()
        if best_width is None or after - before < best_width:
            best_offset, best_width = wall - (before + after) // 2, after - before
    return best_offset, max((best_width or 0) // 2, 1)


def own_pids() -> set[int]:
    """This process's pids in the PID namespaces /proc shows (Linux NSpid), to recognise it in NVML's list.
    NVML reports pids of the driver's namespace; a container whose /proc shows only its own namespace cannot
    map them, and the "already in use" warning may then name this very process (unverified on a GPU)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return {int(pid) for pid in line.split()[1:]} | {os.getpid()}
    except (OSError, ValueError):
        pass
    return {os.getpid()}


def _off_wall_clock(ahead_ns: int) -> str | None:
    """Why samples whose newest is stamped ``ahead_ns`` after now are not on the host wall clock; None when
    they may be."""
    if -MAX_BEHIND_NS <= ahead_ns <= MAX_AHEAD_NS:
        return None
    return (
        f"sample stamps are {abs(ahead_ns) / 1e9:.3g} s "
        f"{'ahead of' if ahead_ns > 0 else 'behind'} the host wall clock: not on it"
    )


def _ordered_from(times: list[int], values: list[Any], floor_ns: int) -> tuple[list[int], list[Any]]:
    """The samples (``times``, ``values``) stamped at ``floor_ns`` or later, in time order and once each (as
    the driver gives them, but for rare exceptions)."""
    if sorted(set(times)) != times:
        by_time = dict(zip(times, values))
        times = sorted(by_time)
        values = [by_time[t] for t in times]
    first = bisect.bisect_left(times, floor_ns)
    return times[first:], values[first:]


def _load_nvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:
        raise TelemetryUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
    return pynvml


class NvmlSampler(Sampler):
    """Samples the GPUs ``devices`` (NVML indices, or UUID strings as torch reports them) through ``nvml``
    (the pynvml module, or a stand-in with the same functions)."""

    kind = "nvml"

    def __init__(self, devices: Sequence[int | str], interval_s: float | None = None, nvml: Any = None):
        super().__init__(interval_s)
        self.nvml = nvml if nvml is not None else _load_nvml()
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise TelemetryUnavailable(f"NVML cannot be initialized: {exc}") from exc
        try:
            self.handles = [self._handle(d) for d in devices]
        except self.nvml.NVMLError as exc:
            self.nvml.nvmlShutdown()
            raise TelemetryUnavailable(f"NVML cannot open the GPU(s) {list(devices)}: {exc}") from exc
        self.devices = list(devices)
        self.power_source = "instant" if self._instant_power(self.handles[0]) is not None else "average"
        self._other_processes = {str(d): self._other_pids(h) for d, h in zip(self.devices, self.handles)}
        # the driver-buffered samples: columns, and per (device position, field) the last NVML stamp seen (us)
        self.buffered: dict[str, list[Any]] = {"t_ns": [], "device": [], "field": [], "value": []}
        self._buffered_fields: set[str] = set()  # the fields that gave at least one sample
        self._wall_offset_ns: int | None = None  # measured at start(); None: buffered samples not fetched
        self._wall_offset_uncertainty_ns: int | None = None
        self._run_start_ns = 0
        self._get_samples = getattr(self.nvml, "nvmlDeviceGetSamples", None)
        self._value_members = {
            getattr(self.nvml, name, value): m for (name, value), m in VALUE_MEMBERS.items()
        }
        self._not_supported = getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3)
        self._not_found = getattr(self.nvml, "NVML_ERROR_NOT_FOUND", 6)
        self._buffered_last_us: dict[tuple[int, str], int] = {}
        self._buffered_seen: dict[tuple[int, str], int] = {}  # samples fetched per (device position, field)
        self._buffered_stride = 1  # of those, every stride-th is kept (doubles past the bound)
        self._buffered_transient: dict[str, str] = {}  # field -> first error other than NotFound/NotSupported
        if self._get_samples is None:
            self.errors["buffered"] = "nvmlDeviceGetSamples is not available in this NVML binding"
        else:
            self._buffered_last_us = {
                (position, name): 0 for position in range(len(self.devices)) for name in BUFFERED_TYPES
            }
        self._sampling_types = {
            name: (getattr(self.nvml, constant, value), divisor)
            for name, (constant, value, divisor) in BUFFERED_TYPES.items()
        }

    def _handle(self, device: int | str) -> Any:
        if isinstance(device, str):
            return self.nvml.nvmlDeviceGetHandleByUUID(device)
        return self.nvml.nvmlDeviceGetHandleByIndex(device)

    def _read(self, field: str, call: Callable[[], Any]) -> Any:
        """One NVML query; a failure leaves None and remembers why (once per field)."""
        try:
            return call()
        except self.nvml.NVMLError as exc:
            self.errors.setdefault(field, str(exc))
            return None

    def _instant_power(self, handle: Any) -> float | None:
        field_id = getattr(self.nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field_id is None:
            return None
        try:
            value = self.nvml.nvmlDeviceGetFieldValues(handle, [field_id])[0]
        except self.nvml.NVMLError:
            return None
        if value.nvmlReturn != 0:
            return None
        return value.value.uiVal / 1000.0

    def _power_w(self, handle: Any) -> float | None:
        if self.power_source == "instant":
            watts = self._instant_power(handle)
            if watts is not None:
                return watts
        milliwatts = self._read("power_w", lambda: self.nvml.nvmlDeviceGetPowerUsage(handle))
        return None if milliwatts is None else milliwatts / 1000.0

    def _clock_reasons(self, handle: Any) -> int | None:
        get = (
            getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        return self._read("clock_event_reasons", lambda: get(handle))

    def _other_pids(self, handle: Any) -> list[int]:
        processes = (
            self._read("processes", lambda: self.nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
        )
        return sorted({p.pid for p in processes} - own_pids())

    def probe(self) -> list[dict[str, Any]]:
        nvml, read = self.nvml, self._read
        rows = []
        for device, h in zip(self.devices, self.handles):
            util = read("gpu_util", lambda h=h: nvml.nvmlDeviceGetUtilizationRates(h))
            memory = read("mem_used_bytes", lambda h=h: nvml.nvmlDeviceGetMemoryInfo(h))
            rows.append(
                {
                    "device": str(device),
                    "gpu_util": None if util is None else util.gpu,
                    "mem_util": None if util is None else util.memory,
                    "mem_used_bytes": None if memory is None else memory.used,
                    "sm_clock_mhz": read(
                        "sm_clock_mhz", lambda h=h: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)
                    ),
                    "mem_clock_mhz": read(
                        "mem_clock_mhz", lambda h=h: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)
                    ),
                    "power_w": self._power_w(h),
                    "temperature_c": read(
                        "temperature_c",
                        lambda h=h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
                    ),
                    "clock_event_reasons": self._clock_reasons(h),
                }
            )
        if self._wall_offset_ns is not None and self._buffered_last_us:
            self._fetch_buffered()
        return rows

    def _fetch_buffered(self) -> None:
        """Append the driver-buffered samples newer than the last seen, per device and type, to ``buffered``.

        NotFound (no sample newer than the stamp passed) and other NVML errors skip that type for this
        probe (the others are reported in the snapshot's errors if the field never gives a sample);
        NotSupported, or stamps that are not on the host wall clock, disable it for the rest of the run
        (per device) and say why in ``errors["buffered <field>"]``. Samples from before start() are
        dropped (the first fetch, with stamp 0, returns the whole buffer)."""
        new: dict[str, list[Any]] = {column: [] for column in self.buffered}
        for key, last_us in list(self._buffered_last_us.items()):
            times, values = self._samples_since(key, last_us)
            if times:
                self._keep_strided(key, times, values, new)
        if new["t_ns"]:
            with self._lock:
                for column, added in new.items():
                    self.buffered[column] += added
                if len(self.buffered["t_ns"]) > BUFFERED_PER_PROBE * self.max_probes:  # the bounding rule:
                    # every other sample of each device's field, and from now on the stride
                    halve(self.buffered, series_ordinals(self.buffered["device"], self.buffered["field"]))
                    self._buffered_stride *= 2
                    self.dropped["halvings"] += 1

    def _get_since(self, key: tuple[int, str], last_us: int) -> tuple[Any, list[Any]] | None:
        """nvmlDeviceGetSamples of (device position, field) ``key`` newer than ``last_us``: (value type,
        samples), or None on an NVML error (NotSupported disables the field on that device)."""
        position, name = key
        try:
            return self._get_samples(self.handles[position], self._sampling_types[name][0], last_us)
        except self.nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == self._not_supported:
                self._disable_buffered(key, str(exc))
            elif code != self._not_found:  # reported only if the field never gives a sample
                self._buffered_transient.setdefault(name, str(exc))
            return None

    def _samples_since(self, key: tuple[int, str], last_us: int) -> tuple[list[int], list[Any]]:
        """The new samples of (device position, field) ``key`` on the host clock, in our unit, in time order and
        once each, newer than ``last_us`` and not before start(); ([], []) when there are none or they cannot be
        read (value type unknown, stamps not on the host wall clock: the field is then disabled on that
        device)."""
        fetched = self._get_since(key, last_us)
        if not fetched or not fetched[1]:
            return [], []
        value_type, samples = fetched
        member = self._value_members.get(value_type)
        if member is None:
            self._disable_buffered(key, f"unknown NVML value type {value_type}")
            return [], []
        offset = self._wall_offset_ns or 0
        stamps = [s.timeStamp for s in samples]
        newest_us = max(stamps)
        off_clock = _off_wall_clock(newest_us * 1000 - offset - time.monotonic_ns())
        if off_clock:
            self._disable_buffered(key, off_clock)
            return [], []
        self._buffered_last_us[key] = max(newest_us, last_us)
        divisor = self._sampling_types[key[1]][1]
        values = [getattr(s.sampleValue, member) for s in samples]
        if divisor != 1:
            values = [v / divisor for v in values]
        # newer than last seen, not before start
        floor_ns = max(self._run_start_ns, last_us * 1000 - offset + 1)
        return _ordered_from([stamp * 1000 - offset for stamp in stamps], values, floor_ns)

    def _keep_strided(
        self, key: tuple[int, str], times: list[int], values: list[Any], new: dict[str, list[Any]]
    ) -> None:
        """Add to the columns ``new`` every stride-th of the samples of ``key``, counted per device and field
        since the run began (the bounding rule's stride)."""
        position, name = key
        seen = self._buffered_seen.get(key, 0)
        self._buffered_seen[key] = seen + len(times)
        kept = [j for j in range(len(times)) if (seen + j) % self._buffered_stride == 0]
        new["t_ns"] += [times[j] for j in kept]
        new["device"] += [str(self.devices[position])] * len(kept)
        new["field"] += [name] * len(kept)
        new["value"] += [values[j] for j in kept]
        self._buffered_fields.add(name)

    def _disable_buffered(self, key: tuple[int, str], reason: str) -> None:
        """Fetch no more samples of (device position, field) ``key`` this run, and say why."""
        del self._buffered_last_us[key]
        position, name = key
        where = "" if len(self.devices) == 1 else f" (GPU {self.devices[position]})"
        self.errors.setdefault(f"buffered {name}", reason + where)

    def start(self) -> None:
        """Measure the wall-to-monotonic offset for the buffered samples, then start the thread."""
        if self._thread is None:
            self._wall_offset_ns, self._wall_offset_uncertainty_ns = measure_wall_offset()
            self._run_start_ns = time.monotonic_ns()
        super().start()

    def snapshot(self) -> dict[str, Any]:
        """The base snapshot plus ``buffered`` (the driver-buffered samples: t_ns, device, field, value),
        ``buffered_fields`` (the fields that gave samples) and ``buffered_clock`` (the offset used)."""
        snapshot = super().snapshot()
        with self._lock:
            buffered = {key: list(column) for key, column in self.buffered.items()}
            fields = [name for name in BUFFERED_TYPES if name in self._buffered_fields]
        for name, reason in self._buffered_transient.items():
            if name not in fields:
                snapshot["errors"].setdefault(f"buffered {name}", reason)
        snapshot["buffered"] = buffered
        snapshot["buffered_fields"] = fields
        snapshot["buffered_clock"] = {
            "wall_offset_ns": self._wall_offset_ns,
            "offset_uncertainty_ns": self._wall_offset_uncertainty_ns,
        }
        return snapshot

    def request_begin(self) -> dict[str, Any]:
        return {"energy_mj": self._energy_mj()}

    def _energy_mj(self) -> list[int | None]:
        return [
            self._read("energy", lambda h=h: self.nvml.nvmlDeviceGetTotalEnergyConsumption(h))
            for h in self.handles
        ]

    def request_end(self, begin: dict[str, Any], duration_s: float) -> dict[str, Any]:
        """Joules of the request from the total-energy counter, or None and the reason it is not measurable."""
        before, after = begin["energy_mj"], self._energy_mj()
        if None in before or None in after:
            return {
                "energy_j": None,
                "energy_note": f"no energy counter: {self.errors.get('energy', 'unsupported')}",
            }
        delta = sum(a - b for a, b in zip(after, before))
        if delta <= 0:  # the notes carry no per-request numbers, so a report lists each kind once
            return {
                "energy_j": None,
                "energy_note": "the energy counter did not advance during the request "
                "(shorter than its update period)",
            }
        if duration_s < MIN_ENERGY_WINDOW_S:
            return {
                "energy_j": None,
                "energy_note": f"request shorter than {MIN_ENERGY_WINDOW_S * 1e3:.0f} ms: "
                "too short for the energy counter's update period",
            }
        return {"energy_j": delta / 1000.0, "energy_note": None}

    def describe(self) -> dict[str, Any]:
        nvml, read = self.nvml, self._read
        devices = []
        for device, h in zip(self.devices, self.handles):
            memory = read("memory_total", lambda h=h: nvml.nvmlDeviceGetMemoryInfo(h))
            limit = read("power_limit", lambda h=h: nvml.nvmlDeviceGetEnforcedPowerLimit(h))
            devices.append(
                {
                    "index": str(device),
                    "name": read("name", lambda h=h: nvml.nvmlDeviceGetName(h)),
                    "memory_total_bytes": None if memory is None else memory.total,
                    "power_limit_w": None if limit is None else limit / 1000.0,
                    "persistence_mode": read(
                        "persistence_mode", lambda h=h: nvml.nvmlDeviceGetPersistenceMode(h)
                    ),
                    "other_processes_at_start": self._other_processes[str(device)],
                }
            )
        return {
            "power_source": self.power_source,
            "driver_version": read("driver_version", nvml.nvmlSystemGetDriverVersion),
            "devices": devices,
        }

    def stop(self) -> None:
        super().stop()
        self.nvml.nvmlShutdown()
