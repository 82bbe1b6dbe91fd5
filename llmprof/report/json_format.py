"""The run itself as plain JSON: the run file's own document with its marks as plain arrays (see
:mod:`llmprof.runfile`), for tools that read JSON. Never imports torch."""

from __future__ import annotations

from typing import IO

from llmprof.runfile import Run, dump_run


def render(run: Run, out: IO[str]) -> None:
    """Write the run file's JSON document of ``run``, its marks plain."""
    out.write(dump_run(run, compact=False))
