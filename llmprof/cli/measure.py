"""The measuring loop, written once (docs/architecture.md, "The workload"): warm-ups then repeats of one or more
variants (alternating A B A B, so that machine drift hits them alike), each record kept as it comes with a progress
line; the unmeasured calls after the repeats; a failure or a signal ending the calls in one line with what was
measured kept; then each run closed and saved with the signals deferred."""

from __future__ import annotations

import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmprof.cli import interrupts
from llmprof.cli.step_capture import StepCapture, after_repeats
from llmprof.errors import UsageError, one_line

if TYPE_CHECKING:  # the torch-free commands (report, compare) import the CLI without torch
    from llmprof.analysis.record import RawRequest
    from llmprof.runfile import Run
    from llmprof.workloads.engines import Engine
    from llmprof.workloads.inputs import Inputs
    from llmprof.workloads.spec import Loaded, WorkloadSpec


@dataclass
class Call:
    """One call's records (a generate() call's one; an engine's one per request it served) and whether it was a
    warm-up; what the progress line and the warm-up's steadiness read."""

    records: list[RawRequest]
    warmup: bool

    @property
    def window(self) -> tuple[int, int]:
        """From the first record's start to the last one's end, on the host clock."""
        windows = [r.window for r in self.records]
        return min(start for start, _ in windows), max(end for _, end in windows)

    @property
    def warnings(self) -> list[str]:
        return [w for r in self.records for w in r.warnings]

    @property
    def tokens(self) -> int:
        return sum(sum(r.tokens_per_sequence) for r in self.records)


@dataclass
class Arm:
    """One variant under measure: its name in messages ("" for a run alone, "A" in ab), its spec, the engine
    making its calls, their inputs, and the run its records go to, whose config is ``spec.to_config(loaded,
    **described)``; ``activate`` puts a model shared by variants into this one's state before each call."""

    name: str
    spec: WorkloadSpec
    engine: Engine
    inputs: Inputs
    run: Run
    loaded: Loaded
    described: dict[str, Any] = field(default_factory=dict)
    activate: Callable[[], None] | None = None
    made: list[Call] = field(default_factory=list)  # the calls made and recorded, warm-ups included

    def __post_init__(self) -> None:
        self.run.config = self.spec.to_config(self.loaded, **self.described)

    def call(self, warmup: bool) -> list[RawRequest]:
        """One call of this variant: its records."""
        if self.activate is not None:
            self.activate()
        return self.engine.call(self.inputs, warmup)

    def record(self, warmup: bool) -> Call:
        """One call of this variant, its records kept in the run."""
        call = Call(self.call(warmup), warmup)
        self.run.records += call.records
        self.made.append(call)
        return call

    @property
    def repeats_made(self) -> int:
        return sum(not call.warmup for call in self.made)

    def close(self, status: int, since_ns: int | None = None) -> None:
        """Finish the run's record after its calls: telemetry (the samples since ``since_ns`` alone, when
        given: a sweep point's), whether it was cut short, how many warm-ups it took (warning when ``--warmup
        auto`` never settled)."""
        from llmprof.analysis.telemetry import telemetry_window
        from llmprof.workloads.runner import is_steady

        run = self.run
        run.telemetry = self.engine.telemetry()
        if run.engine_steps is None:
            run.engine_steps = self.engine.steps()
        if run.telemetry is not None and since_ns is not None:
            run.telemetry = telemetry_window(run.telemetry, since_ns, time.monotonic_ns())
        run.interrupted = status != 0
        warmups = [call for call in self.made if call.warmup]
        run.config = self.spec.to_config(
            self.loaded, **self.described, warmup_calls=len(warmups), repeats_made=self.repeats_made
        )
        if self.spec.warmup is None and status == 0 and not is_steady(warmups):
            was = f"variant {self.name} was " if self.name else ""
            print(f"llmprof: warning: {was}not steady after {len(warmups)} warm-up calls", file=sys.stderr)


def calls(arms: list[Arm], repeats: int, warmup: int | None) -> Iterator[tuple[Arm, Call]]:
    """Make the calls: each variant's warm-ups in turn (``warmup`` calls, None: until steady), then ``repeats``
    rounds of one call each, every call's records appended to its arm's run as they come, the call yielded with
    its arm."""
    from llmprof.workloads.runner import warm_up

    for arm in arms:  # warm each variant (its compile and caches), then alternate the repeats
        for call in warm_up(lambda arm=arm: arm.record(True), warmup):
            yield arm, call
    for _ in range(repeats):
        for arm in arms:
            yield arm, arm.record(False)


def measure(
    arms: list[Arm], capture: StepCapture, device: Any, failing: str = "generate()", debug: bool = False
) -> int:
    """Make the calls of the arms' spec (its repeats and warm-ups) with a progress line each, then the
    unmeasured calls of ``capture`` on ``device`` (each arm's kernels into its run); the exit status: 0, 1 when
    a call failed (``failing`` names what failed), 128 + the signal's number when interrupted, said in one line
    (with ``debug`` after its traceback). A UsageError (a variant that cannot be applied) is raised: nothing to
    keep."""
    spec = arms[0].spec
    total = spec.warmup + spec.repeats if spec.warmup is not None and len(arms) == 1 else None
    try:
        with interrupts.stopping():
            for arm, call in calls(arms, spec.repeats, spec.warmup):
                progress(len(arm.made), total, call, f"{arm.name} " if arm.name else "")
            # after the repeats, which they would perturb: the variants' calls alternate
            after = [(f"variant {arm.name}: " if arm.name else "", _unmeasured(arm)) for arm in arms]
            for arm, kernels in zip(arms, after_repeats(after, capture, spec.max_new_tokens, device)):
                arm.run.kernels = kernels
    except (KeyboardInterrupt, Exception) as exc:  # e.g. out of memory: keep what was measured
        if isinstance(exc, UsageError):
            raise
        measured = min(arm.repeats_made for arm in arms)
        print(failure(exc, measured, spec.repeats, failing, debug), file=sys.stderr)
        return 128 + interrupts.signal_number(exc) if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def _unmeasured(arm: Arm) -> Callable[[], Any]:
    """One unmeasured call of the arm, as the kernel-profiled call reads it (:meth:`Engine.kernel_call`)."""

    def call() -> Any:
        if arm.activate is not None:
            arm.activate()
        return arm.engine.kernel_call(arm.inputs)

    return call


def progress(done: int, total: int | None, call: Call, name: str = "") -> None:
    """One progress line per call: rewritten in place on a terminal, a line each in a log."""
    on_terminal = sys.stderr.isatty()
    kind = "warm-up" if call.warmup else "repeat"
    start, end = call.window
    seconds = (end - start) / 1e9
    of = f"/{total}" if total is not None else ""
    print(
        f"[{done}{of}] {name}{kind} done: {call.tokens} tokens in {seconds:.2f} s",
        end="\r" if on_terminal and done != total else "\n",
        file=sys.stderr,
        flush=True,
    )


def line_break() -> str:
    """Ends the progress line on a terminal (where it is rewritten in place with a carriage return)."""
    return "\n" if sys.stderr.isatty() else ""


def failure(exc: BaseException, measured: int, repeats: int, failing: str, debug: bool) -> str:
    """The one-line message of a call that failed (or was interrupted) after ``measured`` repeats; with
    ``debug`` its traceback is printed first."""
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, KeyboardInterrupt):
        name = signal.Signals(interrupts.signal_number(exc)).name
        return f"{line_break()}llmprof: interrupted after {measured} of {repeats} repeats ({name})"
    return f"{line_break()}llmprof: error: {failing} failed after {measured} of {repeats} repeats: {one_line(exc)}"


def save(run: Any, path: str | None) -> bool:
    """Save a run to ``path`` if one was given and something was measured (a run that measured nothing leaves an
    existing file as it was). False when saving failed: the reason is printed, and the results are still shown."""
    from llmprof.runfile import save_run

    if not path:
        return True
    if not run.measured:
        print(f"llmprof: nothing was measured: {path} is left as it was", file=sys.stderr)
        return True
    try:
        save_run(run, path)
    except OSError as exc:
        print(f"llmprof: error: the run could not be saved to {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    print(f"run saved to {path}", file=sys.stderr)
    return True


def exit_status(status: int, caught: list[int], saved: bool) -> int:
    """The command's exit status: the calls' (a failure, an interruption), else a signal that came while saving,
    else 1 when a save failed."""
    return status or (128 + caught[0] if caught else 0) or (0 if saved else 1)
