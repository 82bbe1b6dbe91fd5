"""Ctrl-C, SIGTERM and SIGHUP while profiling: each keeps what was measured. While the repeats run, the first of
the three stops them (KeyboardInterrupt) and the ones after it are noted, so that a burst of Ctrl-C cannot cut
the cleanup; while the run is saved and printed, they are noted and wait, so that no write in progress is cut;
after an interruption, the process exits without being cut again. The exit status is 128 + the signal's
number."""

from __future__ import annotations

import contextlib
import os
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
def stopping() -> Iterator[list[int]]:
    """While measuring: the first of SIGINT, SIGTERM and SIGHUP stops the repeats (KeyboardInterrupt, or
    :class:`Interrupted`); those after it are only noted (in the yielded list)."""
    caught: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        caught.append(signum)
        if len(caught) == 1:
            interrupted()
            raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)

    with _handlers(handler, SIGNALS):
        yield caught


_state = {"interrupted": False}


def interrupted() -> None:
    """Note that the command was interrupted: from now on the process handler ignores the three signals."""
    _state["interrupted"] = True


def _process_handler(signum: int, _frame: Any) -> None:
    if _state["interrupted"]:
        return  # a burst after the interruption: the process is on its way out, not to be cut
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_DFL)  # SIGTERM, SIGHUP outside the measuring: as if never handled
    os.kill(os.getpid(), signum)


def exiting() -> None:
    """Before ``python -m llmprof`` exits: after an interruption the three signals are ignored at the OS level
    too, since the interpreter's shutdown drops Python's handlers (a late Ctrl-C would kill it mid-exit)."""
    if _state["interrupted"]:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def for_the_process() -> None:
    """In ``python -m llmprof``: the signals act as usual until the command is interrupted, and are ignored from
    then on, so that a burst of Ctrl-C cannot cut the cleanup or the interpreter's shutdown with a traceback."""
    for s in SIGNALS:
        signal.signal(s, _process_handler)


@contextlib.contextmanager
def deferred() -> Iterator[list[int]]:
    """While saving and printing: the three signals are noted (in the yielded list) and do not interrupt."""
    caught: list[int] = []

    def note(signum: int, _frame: Any) -> None:
        interrupted()
        caught.append(signum)

    with _handlers(note, SIGNALS):
        yield caught
