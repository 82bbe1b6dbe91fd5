"""Where llmprof keeps what it builds or measures once: the demo model and the measured peaks."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LLMPROF_CACHE``, else ``~/.cache/llmprof``."""
    return Path(os.environ.get("LLMPROF_CACHE", Path.home() / ".cache" / "llmprof"))
