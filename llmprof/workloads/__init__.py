"""Workloads: what gets profiled and how often. Model loading, the built-in demo model, the synthetic
ground-truth model, kernel-swap variants, and the warm-up/repeat runner."""
