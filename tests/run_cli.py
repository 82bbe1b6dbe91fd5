"""Running ``python -m llmprof`` for the CLI tests: in a subprocess, as a user would, or in this process through
``main([...])`` (the same code less the interpreter's start), both giving a finished process."""

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


def run_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``main(args)`` in this process, its output read from pytest's ``capsys`` (argparse's exits included)."""
    from llmprof.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # --help and --version
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)
