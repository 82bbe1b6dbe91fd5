"""``run --tp`` under torchrun: the checks made before any work, this rank's place in the job (a rank other
than 0 prints nothing and writes nothing), and the gather of every rank's timeline onto rank 0."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llmprof.errors import UsageError

TP_ROOFLINE = "it does not size a sharded model yet (its floor would be the whole model's on one device)"


def check_ranks(tp: bool, rank_timeout: float) -> None:
    """Refuse --tp outside torchrun, and torchrun without --tp, before the model loads."""
    from llmprof.capture.ranks import launched

    if tp and not launched():
        raise UsageError(
            "--tp shards the model over the ranks of a torchrun job: torchrun --nproc-per-node N -m llmprof run"
            " --tp ..."
        )
    if launched() and not tp:
        raise UsageError(
            "under torchrun, run profiles a model sharded over the ranks: add --tp (without it every rank would"
            " load the whole model and write the same files)"
        )
    if not rank_timeout > 0:
        raise UsageError(f"--rank-timeout must be a positive number of seconds, got {rank_timeout}")


def refuse_under_torchrun(command: str) -> None:
    """``command`` runs in one process: refused in one line under torchrun (each rank would repeat it)."""
    from llmprof.capture.ranks import launched

    if launched():
        raise UsageError(f"{command} does not run over torchrun ranks yet: profile them with run --tp")


@dataclass
class JoinedRanks:
    """This rank in the job, and its clock's offset to rank 0's (measured once, before the calls)."""

    info: Any  # llmprof.capture.ranks.Ranks
    offset: tuple[int, int]

    @property
    def quiet(self) -> bool:
        """A rank other than 0: it records and sends its timeline, and shows nothing."""
        return self.info.rank != 0

    def gathered(self, records: list[Any]) -> list[Any] | None:
        """On rank 0, every rank's timeline (None on the others, or when none but its own arrived: said)."""
        timelines, problem = self.info.gather(records, self.offset)
        if problem is not None:
            print(f"llmprof: warning: {problem}; rank 0 keeps its own timeline", file=sys.stderr)
        return timelines if not self.quiet and len(timelines) > 1 else None


@contextlib.contextmanager
def ranks_joined(timeout: float) -> Iterator[JoinedRanks]:
    """Join llmprof's side group of the job (a collective), measure the clock offset; on a rank other than 0
    everything printed inside goes nowhere."""
    from llmprof.capture.ranks import join

    info = join(timeout)
    ranks = JoinedRanks(info, info.clock_offset())
    if not ranks.quiet:
        yield ranks
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield ranks
