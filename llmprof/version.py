"""The version of llmprof (the package metadata says the same)."""

__version__ = "0.1.0"
