"""Ctrl-C, SIGTERM and SIGHUP while profiling: each keeps what was measured. While the repeats run, the three
stop them alike (KeyboardInterrupt); while the run is saved and printed, they are noted and wait, so that no
write in progress is cut. The exit status is 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_number(exc: BaseException) -> int:
    """The signal an interruption came from (SIGINT for a plain KeyboardInterrupt)."""
    return exc.signum if isinstance(exc, Interrupted) else signal.SIGINT


def _raise(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _handlers(handler: Any, signals: tuple[int, ...]) -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in signals}
    try:
        for s in signals:
            signal.signal(s, handler)
        yield
    finally:
        for s, previous in saved.items():
            signal.signal(s, previous)


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """While measuring: SIGTERM and SIGHUP stop the repeats as Ctrl-C does."""
    with _handlers(_raise, (signal.SIGTERM, signal.SIGHUP)):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[list[int]]:
    """While saving and printing: the three signals are noted (in the yielded list) and do not interrupt."""
    caught: list[int] = []
    with _handlers(lambda signum, _frame: caught.append(signum), SIGNALS):
        yield caught
