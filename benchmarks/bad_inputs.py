"""Bad inputs, tried as a user and an adversary would: each CLI case below, classified as clean (a one-line
error, or the run it asked for), traceback, data loss (a file that should be untouched changed), silently
wrong (exit 0 for an input that must be refused) or hang. The run-file mutants are the fuzz test's
(`python -m pytest -s tests/test_runfile_fuzz.py -k every_mutant` prints their counts).

    python benchmarks/bad_inputs.py [--only SUBSTRING]

Prints one line per case that is not clean, then the counts. Exits 1 when any case is not clean.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ERROR, OK = "error", "ok"
SENTINEL = "a file that must stay as it is\n"


def cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(name, argv, expected): ``{tmp}`` and ``{run}`` (a saved run) and ``{keep}`` (a sentinel) in argv."""
    run = ["run", "--max-new-tokens", "4", "--repeats", "1", "--warmup", "0", "--prompt-len", "8"]
    bad_run_flags = {
        "max-new-tokens 0": ["--max-new-tokens", "0"],
        "max-new-tokens -3": ["--max-new-tokens", "-3"],
        "max-new-tokens abc": ["--max-new-tokens", "abc"],
        "batch-size 0": ["--batch-size", "0"],
        "batch-size 1e12": ["--batch-size", "1e12"],
        "batch-size 100000": ["--batch-size", "100000"],
        "batch-size 10**12": ["--batch-size", "1000000000000"],
        "prompt-len 0": ["--prompt-len", "0"],
        "prompt-len 10**12": ["--prompt-len", "1000000000000"],
        "empty prompt": ["--prompt", ""],
        "prompt and prompt-len": ["--prompt", "hi", "--prompt-len", "4"],
        "repeats 0": ["--repeats", "0"],
        "warmup -1": ["--warmup", "-1"],
        "warmup x": ["--warmup", "x"],
        "device mps": ["--device", "mps"],
        "device cuda": ["--device", "cuda"],
        "device cuda:7": ["--device", "cuda:7"],
        "dtype float8": ["--dtype", "float8"],
        "seed -1": ["--seed", "-1"],
        "seed 2**64": ["--seed", str(2**64)],
        "sample-interval 0": ["--sample-interval", "0"],
        "sample-interval inf": ["--sample-interval", "inf"],
        "sample-interval nan": ["--sample-interval", "nan"],
        "sample-interval 1e-9": ["--sample-interval", "1e-9"],
        "peak-bandwidth 0": ["--peak-bandwidth", "0"],
        "peak-bandwidth inf": ["--peak-bandwidth", "inf"],
        "peak-flops abc": ["--peak-flops", "abc"],
        "model missing": ["--model", "/nonexistent/model"],
        "model is a file": ["--model", "{run}"],
        "model hub id offline": ["--model", "someone/some-model"],
        "json in a missing directory": ["--json", "/nonexistent/dir/run.json"],
        "json is a directory": ["--json", "{tmp}"],
        "json onto output": ["--json", "{tmp}/x.json", "-o", "{tmp}/x.json"],
        "format bogus": ["--format", "bogus"],
        "per-step without csv": ["--per-step"],
        "plot without output": ["--format", "plot"],
        "patch without colon": ["--patch", "nocolon"],
        "patch missing module": ["--patch", "nomodule:f"],
        "unknown flag": ["--bogus"],
    }
    # a run refused must leave an existing --json as it was (but for the cases that name their own --json)
    keep = ["--json", "{keep}"]
    out = [
        (f"run --{name}", [*run, *flags, *([] if "--json" in flags else keep)], ERROR)
        for name, flags in bad_run_flags.items()
    ]
    out += [
        ("run, good", [*run, "-o", "{tmp}/good.md", "--format", "md"], OK),
        ("run -o /dev/full", [*run, "-o", "/dev/full", "--format", "md"], ERROR),
        ("report missing file", ["report", "/nonexistent.json"], ERROR),
        ("report a directory", ["report", "{tmp}"], ERROR),
        ("report an empty file", ["report", "{tmp}/empty.json"], ERROR),
        ("report not JSON", ["report", "{tmp}/text.json"], ERROR),
        ("report onto its input", ["report", "{keep}", "-o", "{keep}"], ERROR),
        ("report plot without -o", ["report", "{run}", "--format", "plot"], ERROR),
        ("report to /dev/stdout", ["report", "{run}", "--format", "md", "-o", "/dev/stdout"], OK),
        ("report, good", ["report", "{run}", "--format", "csv", "--per-step"], OK),
        ("compare one run", ["compare", "{run}"], ERROR),
        ("compare onto an input", ["compare", "{run}", "{keep}", "-o", "{keep}"], ERROR),
        ("compare, good", ["compare", "{run}", "{run}"], OK),
        ("ab without --b", ["ab"], ERROR),
        ("ab --b attn=bogus", ["ab", "--b", "attn=bogus"], ERROR),
        ("ab --b compile=maybe", ["ab", "--b", "compile=maybe"], ERROR),
        ("ab --b dtype=fp8", ["ab", "--b", "dtype=fp8"], ERROR),
        ("ab --b foo=bar", ["ab", "--b", "foo=bar"], ERROR),
        (
            "ab json-a == json-b",
            ["ab", "--b", "attn=eager", "--json-a", "{keep}", "--json-b", "{keep}"],
            ERROR,
        ),
        ("-h", ["-h"], OK),
        ("--version", ["--version"], OK),
        ("run -h", ["run", "-h"], OK),
    ]
    return out


def classify(argv: list[str], expected: str, keep: Path, env: dict[str, str]) -> str:
    keep.write_text(SENTINEL)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "llmprof", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hang"
    if "Traceback" in result.stderr:
        return "traceback"
    if keep.read_text() != SENTINEL:
        return "data loss"
    if expected == ERROR:
        if result.returncode == 0:
            return "silently wrong"
        errors = [line for line in result.stderr.splitlines() if line.startswith("llmprof: error:")]
        return "clean" if errors else "no one-line error"
    return "clean" if result.returncode == 0 else "failed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from timelines import synthetic_run

    from llmprof.runfile import save_run

    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        save_run(synthetic_run(10.0), tmp / "run.json")
        (tmp / "empty.json").write_text("")
        (tmp / "text.json").write_text("not json at all")
        keep = tmp / "keep.json"
        env = {**os.environ, "HF_ENDPOINT": "https://hub.invalid"}
        for case, argv, expected in cases(tmp):
            if args.only and args.only not in case:
                continue
            argv = [a.format(tmp=tmp, run=tmp / "run.json", keep=keep) for a in argv]
            outcome = classify(argv, expected, keep, env)
            counts[outcome] += 1
            if outcome != "clean":
                print(f"{outcome}: {case}: llmprof {' '.join(argv)}")
    tried = sum(counts.values())
    print(f"CLI cases: {tried} tried, " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)))
    return 0 if counts["clean"] == tried else 1


if __name__ == "__main__":
    raise SystemExit(main())
