"""GPU telemetry through NVML (nvidia-ml-py): utilization, memory, clocks, power, temperature, clock-event
(throttle) reasons, and the total-energy counter read at request boundaries. Never imports torch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from llmprof.sampling.base import Sampler

MIN_ENERGY_WINDOW_S = 0.1  # below this the energy counter's update period makes a reading noise


class TelemetryUnavailable(Exception):
    """NVML cannot be used here; the message says why."""


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
        return sorted({p.pid for p in processes} - {os.getpid()})

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
        return rows

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
        if duration_s < MIN_ENERGY_WINDOW_S or delta <= 0:
            return {
                "energy_j": None,
                "energy_note": f"request of {duration_s * 1e3:.0f} ms is too short for the energy counter "
                f"(it advanced {delta} mJ; needs >= {MIN_ENERGY_WINDOW_S * 1e3:.0f} ms and an update)",
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
