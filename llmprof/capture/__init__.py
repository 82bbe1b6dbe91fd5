"""Capture: the only layer that imports torch, transformers or NVML. The profiler and its hooks on
``generate()``, token counting, the timeline around the compiled recorder, the telemetry samplers, the
environment probes, the model's shape and the device's peaks (see docs/architecture.md)."""
