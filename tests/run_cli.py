"""Running ``python -m llmprof`` in a subprocess, as a user would, for the CLI tests."""

import subprocess
import sys


def run_llmprof(*args, env=None, cwd=None, timeout=300):
    """The finished process (never raises on a non-zero exit), with text stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "llmprof", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
