"""Pure-Python analysis of recorded requests: the raw record, metrics, the metric registry, statistics, the
roofline, telemetry summaries and comparisons. Nothing here imports torch, transformers or NVML, so a saved
run can be analysed on any machine (see docs/architecture.md)."""
