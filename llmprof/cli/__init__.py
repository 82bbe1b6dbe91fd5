"""``python -m llmprof [SUBCOMMAND]``: one module per subcommand. No subcommand runs the built-in demo.

Every user-facing failure is an :class:`llmprof.errors.LlmprofError`: :func:`main` prints it as one line and
exits with its code; ``--debug`` shows the full traceback instead."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import NoReturn

from llmprof.cli import ab, compare, interrupts, report, run, sweep
from llmprof.errors import LlmprofError, UsageError
from llmprof.imports import import_failure
from llmprof.version import __version__

DEBUG = "--debug"
DEBUG_HELP = "on an error, show the full traceback instead of one line"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


SUBCOMMANDS = {"run": run, "report": report, "compare": compare, "ab": ab, "sweep": sweep}


def build_parser() -> argparse.ArgumentParser:
    from llmprof.cli.common import summary

    parser = _Parser(
        prog="llmprof",
        description="Profile LLM inference: TTFT, TPOT, latency and tokens/s of a model's generate()."
        " Without a subcommand, llmprof runs `run`: on the built-in demo model unless --model is given.",
    )
    parser.add_argument("--version", action="version", version=f"llmprof {__version__}")
    parser.add_argument(DEBUG, action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        help_ = summary(module.__doc__).replace("%", "%%")  # help strings are %-formatted
        command = sub.add_parser(name, help=help_, description=module.__doc__)
        module.add_parser(command)
        command.add_argument(DEBUG, action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _with_subcommand(argv: list[str]) -> list[str]:
    """``llmprof [--debug] [OPTIONS]`` without a subcommand is ``llmprof [--debug] run [OPTIONS]``."""
    i = 0
    while i < len(argv) and argv[i] == DEBUG:
        i += 1
    if i == len(argv) or argv[i].startswith("-") and argv[i] not in ("-h", "--help", "--version"):
        return [*argv[:i], "run", *argv[i:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    """Entry point of the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    debug = DEBUG in argv  # known before parsing, so that a parse error can show its traceback too
    try:
        args = build_parser().parse_args(_with_subcommand(argv))
        return SUBCOMMANDS[args.command].main(args)
    except KeyboardInterrupt:
        interrupts.interrupted()
        print("llmprof: interrupted", file=sys.stderr)
        return 130
    except (LlmprofError, OSError, ImportError) as exc:  # OSError: e.g. an output file that cannot be written
        if debug:
            traceback.print_exc()
        else:
            print(f"llmprof: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, LlmprofError) else 1


def _one_line(exc: LlmprofError | OSError | ImportError) -> str:
    if isinstance(exc, ImportError):  # torch or transformers broken, or shadowed by a file of the user's
        return import_failure(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)
