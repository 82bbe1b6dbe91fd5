"""A patch that makes one rank of a torchrun job late, to see it in the skew: `run --tp --patch
examples.slow_rank:rank1` sleeps 40 ms on rank 1 after each of its forwards (a forward hook, so the forward's
signature, which generate() reads, stays as it is). Being after the step's last all-reduce, the delay shows as
rank 1's tokens coming 40 ms after rank 0's; rank 0 then waits for it in the next step's first all-reduce."""

from __future__ import annotations

import os
import time
from typing import Any

DELAY_S = 0.04


def rank1(model: Any) -> None:
    """On rank 1 only: sleep DELAY_S after every forward of ``model``."""
    if os.environ.get("RANK") == "1":
        model.register_forward_hook(lambda *_: time.sleep(DELAY_S))
