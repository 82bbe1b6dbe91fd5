"""``python -m llmprof [SUBCOMMAND]``: one module per subcommand. No subcommand runs the built-in demo."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from llmprof.cli import ab, compare, report, run
from llmprof.cli.common import CliError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


SUBCOMMANDS = {"run": run, "report": report, "compare": compare, "ab": ab}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmprof", description=__doc__)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, module in SUBCOMMANDS.items():
        module.add_parser(
            sub.add_parser(name, help=module.__doc__.splitlines()[0], description=module.__doc__)
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    try:
        args = build_parser().parse_args(argv)
        return SUBCOMMANDS[args.command].main(args)
    except CliError as exc:
        print(f"llmprof: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output file that cannot be written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"llmprof: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("llmprof: interrupted", file=sys.stderr)
        return 130
