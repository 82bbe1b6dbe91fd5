"""``-h``, as a new user reads it: what llmprof is, a complete summary per subcommand, and every option of
every subcommand explained, with the defaults of the workload's sizes."""

import re

import pytest
from run_cli import run_in_process

from llmprof.cli import SUBCOMMANDS

WORKLOAD_DEFAULTS = {
    "--max-new-tokens": 64,
    "--batch-size": 1,
    "--prompt-len": 128,
    "--repeats": 5,
    "--warmup": 1,
}


def help_of(capsys, *command: str) -> str:
    result = run_in_process(capsys, *command, "-h")
    assert result.returncode == 0 and not result.stderr
    return result.stdout


def entries(text: str, section: str, indent: int) -> dict[str, str]:
    """The entries of one section of a help text (options: 2 spaces in; subcommands: 4): each name, its
    help joined onto one line ('' when it has none)."""
    lines = text.split(f"\n{section}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    found: dict[str, str] = {}
    name = ""
    for line in lines:
        if re.match(rf" {{{indent}}}\S", line):  # an entry: its invocation, then its help after 2+ spaces
            invocation, help_ = re.fullmatch(r"(\S+(?: \S+)*)(?:\s{2,}(.*))?", line.strip()).groups()
            name = invocation.split()[0].rstrip(",")
            found[name] = help_ or ""
        elif name:
            found[name] = f"{found[name]} {line.strip()}".strip()
    return found


def test_top_level_help_says_what_llmprof_does_and_summarizes_each_subcommand_in_a_whole_sentence(capsys):
    text = help_of(capsys)
    description = text.split("\n\n", 2)[1]
    assert "``" not in text and not description.startswith("``python -m")
    assert "TTFT" in description and "demo" in description
    summaries = entries(text, "positional arguments", 4)
    assert set(summaries) == set(SUBCOMMANDS)
    for name, summary in summaries.items():
        assert summary.endswith(".") and summary.count("(") == summary.count(")"), (name, summary)


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_every_option_of_every_subcommand_has_help(capsys, command):
    options = entries(help_of(capsys, command), "options", 2)
    assert "--debug" in options and "-h" in options
    assert not [name for name, help_ in options.items() if not help_]


@pytest.mark.parametrize("command", ["run", "ab", "sweep"])
def test_the_workload_sizes_show_their_defaults(capsys, command):
    options = entries(help_of(capsys, command), "options", 2)
    for option, default in WORKLOAD_DEFAULTS.items():
        assert f"(default: {default})" in options[option], (option, options[option])
