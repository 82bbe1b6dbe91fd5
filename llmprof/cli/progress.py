"""A progress bar for slow work (loading and rendering a big run): on stderr, only when it is a terminal and
only once the work has taken longer than SHOW_AFTER_S, so that a fast command prints nothing; it is gone
when the work ends (rich's transient progress)."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any, final

SHOW_AFTER_S = 1.0


@final
class Stages:
    """The stages of one piece of work: ``with Stages(3) as stages: stages.step("loading run.json") ...``;
    each :meth:`step` starts the next stage. The bar (stage k of n, its name, time elapsed) appears after
    ``show_after_s`` if the work is still going and ``console`` is a terminal."""

    def __init__(self, total: int, console: Any = None, show_after_s: float = SHOW_AFTER_S):
        self.total = total
        self.console = console
        self.show_after_s = show_after_s
        self.done = 0
        self.name = ""
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._progress: Any = None
        self._task: Any = None
        self._finished = False
        self._finished_bar = False

    def __enter__(self) -> Stages:
        if self.console is None:
            if not sys.stderr.isatty():  # no bar to show: not even rich to import
                return self
            from rich.console import Console

            self.console = Console(stderr=True)
        if self.console.is_terminal:
            self._timer = threading.Timer(self.show_after_s, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def step(self, name: str) -> None:
        """Start the next stage, ``name``."""
        with self._lock:
            if self.name:
                self.done += 1
            self.name = name
            if self._progress is not None:
                self._progress.update(self._task, completed=self.done, description=name)

    def _show(self) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._finished:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task(self.name, total=self.total, completed=self.done)
            self._progress.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the work now: the bar, if shown, goes (before anything is written where it was)."""
        with self._lock:
            self._finished = True
            if self._timer is not None:
                self._timer.cancel()
            if self._progress is not None and not self._finished_bar:
                self._progress.update(self._task, completed=self.total)
                self._progress.stop()
                self._finished_bar = True

    @property
    def shown(self) -> bool:
        """Whether the bar appeared (the work outlasted ``show_after_s`` on a terminal)."""
        return self._progress is not None
