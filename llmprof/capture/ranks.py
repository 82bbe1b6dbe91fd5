"""The ranks of a torchrun job, from inside one of them: which rank this is, how its host clock maps onto rank
0's, and gathering every rank's records onto rank 0. All of it goes over a gloo group of llmprof's own (made
on the process group already initialized, nccl or gloo) with its own timeout, so that a rank that died makes
the others fail in one line naming it rather than hang. See docs/architecture.md, "Ranks"."""

from __future__ import annotations

import datetime
import os
import socket
import statistics
import time
from dataclasses import dataclass
from typing import Any

from llmprof.analysis.ranks import RankTimeline
from llmprof.analysis.record import RawRequest
from llmprof.errors import CaptureError

CLOCK_ROUNDS = 16  # barrier-stamped rounds of the offset estimate of a rank on another host
DEFAULT_TIMEOUT_S = 120.0


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank from the launcher's environment (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class Ranks:
    """This process's place in the job and llmprof's side group; build it with :func:`join` (a collective:
    every rank calls it, in the same order)."""

    rank: int
    world_size: int
    backend: str
    hostname: str
    group: Any
    timeout_s: float

    def clock_offset(self) -> tuple[int, int]:
        """This rank's host clock against rank 0's: (offset to add to its stamps, its uncertainty), in ns. A
        collective. Ranks on rank 0's host share its CLOCK_MONOTONIC: (0, 0). Others: the median over
        barrier-stamped rounds of (its stamp - rank 0's), uncertain by half the rounds' spread (plus what a
        barrier's exit skew hides)."""
        import torch
        import torch.distributed as dist

        hosts: list[Any] = [None] * self.world_size
        dist.all_gather_object(hosts, self.hostname, group=self.group)
        if all(h == hosts[0] for h in hosts):
            return 0, 0
        differences = []
        for _ in range(CLOCK_ROUNDS):
            dist.barrier(group=self.group)
            stamp = torch.tensor([time.monotonic_ns()], dtype=torch.int64)
            stamps = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
            dist.all_gather(stamps, stamp, group=self.group)
            differences.append(int(stamps[0]) - int(stamps[self.rank]))
        if self.hostname == hosts[0]:
            return 0, 0
        offset = round(statistics.median(differences))
        return offset, (max(differences) - min(differences)) // 2

    def gather(
        self, records: list[RawRequest], offset: tuple[int, int]
    ) -> tuple[list[RankTimeline], str | None]:
        """Every rank's timeline on rank 0 (rank 0 first; on the other ranks, their own only), and what went
        wrong: a rank that does not reach the gather within the timeout is named, and rank 0 keeps what it
        has (its own timeline). A collective."""
        import torch.distributed as dist

        mine = RankTimeline(self.rank, self.hostname, offset[0], offset[1], records)
        try:
            dist.monitored_barrier(
                group=self.group, timeout=datetime.timedelta(seconds=self.timeout_s), wait_all_ranks=True
            )
            payload = {**mine.__dict__, "records": [r.to_dict() for r in records]}
            gathered: list[Any] = [None] * self.world_size if self.rank == 0 else []
            dist.gather_object(payload, gathered if self.rank == 0 else None, dst=0, group=self.group)
            # no rank leaves (and closes its sockets) before rank 0 has them all
            dist.barrier(group=self.group)
            dist.destroy_process_group(self.group)
        except Exception as exc:  # noqa: BLE001 - a rank that died or hangs: keep this rank's own timeline
            text = str(exc).strip().splitlines()
            reason = text[0].split(". ")[0] if text else type(exc).__name__  # gloo's first sentence
            return [mine], f"the ranks' timelines were not gathered (a rank failed or left): {reason}"
        if self.rank != 0:
            return [mine], None
        timelines = [mine]
        for entry in sorted(gathered[1:], key=lambda e: e["rank"]):
            records_of = [RawRequest.from_dict(r) for r in entry.pop("records")]
            timelines.append(RankTimeline(**entry, records=records_of))
        return timelines, None


def save_ranks(
    records: list[RawRequest],
    path: str,
    config: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """In a torchrun script of one's own: gather every rank's ``records`` (a profiler's or a Recorder's) onto
    rank 0, which saves them as one run file (a timeline per rank; ``report`` shows their skew) and gets the
    Run back; the other ranks get None. A collective: every rank calls it, after the same calls."""
    import warnings

    from llmprof.capture.environment import capture_environment
    from llmprof.runfile import Run, save_run

    ranks = join(timeout_s)
    timelines, problem = ranks.gather(records, ranks.clock_offset())
    if problem is not None:
        warnings.warn(f"llmprof: {problem}; rank 0 keeps its own timeline", stacklevel=2)
    if ranks.rank != 0:
        return None
    settings = {**(config or {}), "world_size": ranks.world_size, "dist_backend": ranks.backend}
    run = Run(config=settings, environment=capture_environment(), records=list(records))
    run.ranks = timelines if len(timelines) > 1 else None
    save_run(run, path)
    return run


def join(timeout_s: float = DEFAULT_TIMEOUT_S) -> Ranks:
    """This rank's :class:`Ranks`, on the process group already initialized (by transformers' ``tp_plan``,
    or the user's ``init_process_group``). A collective. Raises CaptureError when there is none."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise CaptureError("no torch.distributed process group is initialized: launch with torchrun")
    group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Ranks(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        backend=str(dist.get_backend()),
        hostname=socket.gethostname(),
        group=group,
        timeout_s=timeout_s,
    )
