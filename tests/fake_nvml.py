"""A stand-in for the pynvml module: the NVML functions llmprof calls, with values and failures the tests set."""

import time
from types import SimpleNamespace

import pynvml

NVMLError = pynvml.NVMLError
VALUE_MEMBERS = {  # NVML value type -> the member of the sample's value union that holds it
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
}


def error(code):
    """The pynvml exception of an NVML return code (e.g. pynvml.NVML_ERROR_NOT_SUPPORTED)."""
    return NVMLError(code)  # pynvml maps the code to its subclass (NVMLError_NotSupported, ...)


class FakeNvml:
    """Set attributes to shape what NVML reports; ``fail[function name] = code`` makes that call raise.

    The driver's sample buffer (nvmlDeviceGetSamples): one sample of each type every ``sample_period_s``
    from the fake's creation, stamped in microseconds of the wall clock (plus ``sample_stamp_offset_us``),
    valued at the current ``power_w`` (in mW) / ``util`` / ``buffered_sm_clock``, the newest
    ``buffer_size`` kept; ``samples_fail[sampling type] = code`` makes that type raise.
    """

    NVMLError = NVMLError
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
    NVML_TOTAL_POWER_SAMPLES = pynvml.NVML_TOTAL_POWER_SAMPLES
    NVML_GPU_UTILIZATION_SAMPLES = pynvml.NVML_GPU_UTILIZATION_SAMPLES
    NVML_PROCESSOR_CLK_SAMPLES = pynvml.NVML_PROCESSOR_CLK_SAMPLES

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
        self.sample_period_s = 0.01
        self.buffer_size = 1000
        self.buffered_sm_clock = 1980
        self.sample_stamp_offset_us = 0  # stamps off the wall clock by this much
        self.samples_fail: dict[int, int] = {}  # sampling type -> NVML error code it raises
        self.sample_value_types = {  # sampling type -> NVML value type of its samples
            self.NVML_TOTAL_POWER_SAMPLES: pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
            self.NVML_GPU_UTILIZATION_SAMPLES: pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
            self.NVML_PROCESSOR_CLK_SAMPLES: pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
        }
        self.samples_requested: list[tuple[object, int, int]] = []  # (handle, sampling type, timeStamp)
        self._wall_start_us = time.time_ns() // 1000

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

    def nvmlDeviceGetSamples(self, handle, sampling_type, timeStamp):
        """(value type, samples newer than ``timeStamp``) as pynvml returns them: c_nvmlSample_t structs."""
        self._call("nvmlDeviceGetSamples")
        self.samples_requested.append((handle, sampling_type, timeStamp))
        if sampling_type in self.samples_fail:
            raise error(self.samples_fail[sampling_type])
        value = {
            self.NVML_TOTAL_POWER_SAMPLES: int(self.power_w * 1000),
            self.NVML_GPU_UTILIZATION_SAMPLES: self.util,
            self.NVML_PROCESSOR_CLK_SAMPLES: self.buffered_sm_clock,
        }.get(sampling_type)
        if value is None:
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        value_type = self.sample_value_types[sampling_type]
        member = VALUE_MEMBERS[value_type]
        period_us = int(self.sample_period_s * 1e6)
        taken = (time.time_ns() // 1000 - self._wall_start_us) // period_us + 1  # samples so far
        first = max(taken - self.buffer_size, 0)  # the ring buffer keeps the newest
        stamps = [
            self._wall_start_us + k * period_us + self.sample_stamp_offset_us for k in range(first, taken)
        ]
        stamps = [t for t in stamps if t > timeStamp]
        if not stamps:
            raise error(pynvml.NVML_ERROR_NOT_FOUND)  # what NVML answers when nothing is newer
        samples = (pynvml.c_nvmlSample_t * len(stamps))()
        for sample, stamp in zip(samples, stamps):
            sample.timeStamp = stamp
            setattr(sample.sampleValue, member, float(value) if member == "dVal" else value)
        return value_type, samples[0 : len(stamps)]

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
