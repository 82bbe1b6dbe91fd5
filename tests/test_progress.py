"""The progress bar of slow renders: shown on a terminal once the work outlasts its threshold, never for fast
work or when stderr is not a terminal, and gone when the work ends."""

import io
import threading

from rich.console import Console

from llmprof.cli.progress import Stages


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_slow_work_shows_each_stage_then_clears_the_bar():
    console, out = terminal()
    shown = threading.Event()
    with Stages(3, console=console, show_after_s=0.0) as stages:
        stages.step("loading run.json")
        original = stages._show

        def show():
            original()
            shown.set()

        stages._timer.cancel()  # the timer's work, done here (deterministic)
        show()
        assert shown.is_set() and stages.shown
        stages.step("rendering trace")
        stages._progress.refresh()
        stages.step("writing run.pftrace")
        stages._progress.refresh()
    text = out.getvalue()
    assert "loading run.json" in text and "rendering trace" in text and "writing run.pftrace" in text
    assert "1/3" in text and "2/3" in text
    assert not stages._progress.live.is_started  # transient: stopped, and cleared from the terminal


def test_fast_work_prints_nothing():
    console, out = terminal()
    with Stages(3, console=console, show_after_s=3600.0) as stages:
        stages.step("loading run.json")
        stages.step("rendering table")
    assert out.getvalue() == "" and not stages.shown


def test_no_bar_when_stderr_is_not_a_terminal():
    out = io.StringIO()
    with Stages(2, console=Console(file=out, force_terminal=False), show_after_s=0.0) as stages:
        stages.step("loading run.json")
        assert stages._timer is None  # never armed
    assert out.getvalue() == "" and not stages.shown


def test_a_bar_shown_late_is_not_started_after_the_work_ended():
    console, out = terminal()
    with Stages(1, console=console, show_after_s=3600.0) as stages:
        stages.step("loading run.json")
    stages._show()  # a timer that fired as the work ended
    assert not stages.shown and out.getvalue() == ""
