"""Decode loops of one's own profiled with llmprof.Recorder (``run --loop examples.NAME:FUNCTION`` from the
repository root)."""
