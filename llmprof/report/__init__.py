"""Reporters: one module per output format. They never import torch or NVML."""
