"""The README's examples work as written: its Python blocks run in order on the demo model, and every
``python -m llmprof`` line of its shell blocks is a command line the CLI accepts."""

import re
import shlex
from pathlib import Path

import pytest

from llmprof.cli import _with_subcommand, build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_the_python_blocks_run_in_order_on_the_demo_model(tmp_path, monkeypatch, capsys):
    code = blocks("python")
    assert len(code) >= 2
    monkeypatch.chdir(tmp_path)  # a block may write files (run.json)
    namespace: dict = {}
    for number, block in enumerate(code, 1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)  # noqa: S102 - as a reader runs it
    prof, rec = namespace["prof"], namespace["rec"]
    assert len(prof.requests) == 1 and len(prof.requests[0].output_tokens) == 2
    assert rec.requests[-1].tpot is not None and (tmp_path / "run.json").exists()


def commands() -> list[list[str]]:
    """The arguments of every ``python -m llmprof`` line of the shell blocks (continuations joined)."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            _, found, rest = line.partition("-m llmprof")
            if found and (not rest or rest[0] == " "):
                out.append(shlex.split(rest))
    return out


@pytest.mark.parametrize("args", commands(), ids=" ".join)
def test_every_llmprof_command_line_of_the_readme_parses(args):
    build_parser().parse_args(_with_subcommand(args))
