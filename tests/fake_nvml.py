"""A stand-in for the pynvml module: the NVML functions llmprof calls, with values and failures the tests set."""

import time
from types import SimpleNamespace

import pynvml

NVMLError = pynvml.NVMLError


def error(code):
    """The pynvml exception of an NVML return code (e.g. pynvml.NVML_ERROR_NOT_SUPPORTED)."""
    return NVMLError(code)  # pynvml maps the code to its subclass (NVMLError_NotSupported, ...)


class FakeNvml:
    """Set attributes to shape what NVML reports; ``fail[function name] = code`` makes that call raise."""

    NVMLError = NVMLError
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    NVML_FI_DEV_POWER_INSTANT = 186

    def __init__(self, devices=1):
        self.devices = devices
        self.fail: dict[str, int] = {}
        self.util, self.mem_util, self.mem_used, self.mem_total = 73, 41, 3 << 30, 80 << 30
        self.sm_clocks = [1980]  # cycled through, one per read
        self.mem_clock, self.temperature, self.reasons = 2619, 61, 0
        self.power_w = 350.0  # also the rate at which the energy counter advances
        self.energy_advances = True
        self.instant_power_supported = True
        self.other_pids = []
        self.calls: dict[str, int] = {}
        self._start = time.monotonic()
        self._clock_reads = 0
        self.initialized = 0

    def _call(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise error(self.fail[name])

    def nvmlInit(self):
        self._call("nvmlInit")
        self.initialized += 1

    def nvmlShutdown(self):
        self._call("nvmlShutdown")
        self.initialized -= 1

    def nvmlDeviceGetHandleByIndex(self, index):
        self._call("nvmlDeviceGetHandleByIndex")
        if index >= self.devices:
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self._call("nvmlDeviceGetHandleByUUID")
        return ("handle", uuid)

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self.util, memory=self.mem_util)

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(used=self.mem_used, total=self.mem_total, free=self.mem_total - self.mem_used)

    def nvmlDeviceGetClockInfo(self, handle, clock):
        self._call("nvmlDeviceGetClockInfo")
        if clock == self.NVML_CLOCK_MEM:
            return self.mem_clock
        self._clock_reads += 1
        return self.sm_clocks[(self._clock_reads - 1) % len(self.sm_clocks)]

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        self._call("nvmlDeviceGetFieldValues")
        status = 0 if self.instant_power_supported else pynvml.NVML_ERROR_NOT_SUPPORTED
        return [SimpleNamespace(nvmlReturn=status, value=SimpleNamespace(uiVal=int(self.power_w * 1000)))]

    def nvmlDeviceGetPowerUsage(self, handle):
        self._call("nvmlDeviceGetPowerUsage")
        return int(self.power_w * 1000)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._call("nvmlDeviceGetTemperature")
        return self.temperature

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        self._call("nvmlDeviceGetCurrentClocksEventReasons")
        return self.reasons

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._call("nvmlDeviceGetTotalEnergyConsumption")
        elapsed = time.monotonic() - self._start if self.energy_advances else 0.0
        return 10_000_000 + int(elapsed * self.power_w * 1000)  # mJ

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid) for pid in self.other_pids]

    def nvmlDeviceGetName(self, handle):
        self._call("nvmlDeviceGetName")
        return "NVIDIA Fake H100"

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._call("nvmlDeviceGetEnforcedPowerLimit")
        return 700_000

    def nvmlDeviceGetPersistenceMode(self, handle):
        self._call("nvmlDeviceGetPersistenceMode")
        return 1

    def nvmlSystemGetDriverVersion(self):
        self._call("nvmlSystemGetDriverVersion")
        return "999.99"
