"""The run itself as JSON: the run file's own document (see :mod:`llmprof.runfile`). Never imports torch."""

from __future__ import annotations

from typing import IO

from llmprof.runfile import Run, dump_run


def render(run: Run, out: IO[str]) -> None:
    """Write the run file's JSON document of ``run``."""
    out.write(dump_run(run))
