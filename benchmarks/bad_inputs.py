"""Bad inputs, tried as a user and an adversary would: each CLI case below, classified as clean (a one-line
error, or the run it asked for), traceback, data loss (a file that should be untouched changed, or what was
measured neither saved nor shown), silently wrong (exit 0 for an input that must be refused, or a figure
shown without the warning it needs), killed or hang. The run-file mutants are the fuzz test's
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

ERROR, OK, GATE = "error", "ok", "gate"  # GATE: exit 1 with the gate's own lines (CHECKS), no error
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
    return out + adversary_cases()


def adversary_cases() -> list[tuple[str, list[str], str]]:
    """The cases of the adversary's report (issue 27: lost, clobbered, killed, silently wrong), on the synthetic
    model ``{syn}``; those whose outcome needs more than the exit status have a check in CHECKS."""
    syn = ["--model", "{syn}", "--prompt-len", "4", "--max-new-tokens", "3", "--no-telemetry"]
    sweep = ["sweep", *syn, "--repeats", "1"]
    return [
        (
            "sweep, every point refused",
            [*sweep, "--batch-size", "99999999999999999999", "--json", "{keep}"],
            ERROR,
        ),
        ("sweep --depth 1e9 unsizable", [*sweep, "--depth", "1000000000", "--json", "{keep}"], ERROR),
        (
            "run --loop exits 0",
            ["run", *syn, "--loop", "llmprof_exits:decode", "--json", "{tmp}/loop.json"],
            ERROR,
        ),
        (
            "ab loop exits 0",
            ["ab", *syn, "--b", "loop=llmprof_exits:decode", "--json-b", "{tmp}/ab.json"],
            ERROR,
        ),
        ("run --loop tokens=2**31", ["run", *syn, "--loop", "llmprof_exits:huge", "--json", "{keep}"], ERROR),
        (
            "run -o /dev/full, no --json",
            ["run", *syn, "--repeats", "2", "-o", "/dev/full", "--format", "md"],
            ERROR,
        ),
        ("report a relabelled sweep", ["report", "{tmp}/relabelled.json"], ERROR),
        ("report a contradicting config", ["report", "{tmp}/contradicting.json"], ERROR),
        ("compare --fail-on, 3 repeats", ["compare", "{run}", "{run}", "--fail-on", "tpot:+2%"], GATE),
        ("compare sweeps of two models", ["compare", "{tmp}/sweep-a.json", "{tmp}/sweep-b.json"], OK),
        (
            "run --peak-bandwidth 1GB/s",
            ["run", "--repeats", "1", "--max-new-tokens", "3", "--peak-bandwidth", "1GB/s"],
            OK,
        ),
    ]


# name -> (what the output must show, the outcome when it does not)
CHECKS = {
    "run --loop exits 0": (lambda out, tmp: (tmp / "loop.json").exists(), "data loss"),
    "ab loop exits 0": (lambda out, tmp: (tmp / "ab.json").exists(), "data loss"),
    "run -o /dev/full, no --json": (lambda out, tmp: "TPOT" in out, "data loss"),
    "compare --fail-on, 3 repeats": (lambda out, tmp: "cannot judge" in out, "silently wrong"),
    "compare sweeps of two models": (lambda out, tmp: "model differs" in out, "silently wrong"),
    "run --peak-bandwidth 1GB/s": (lambda out, tmp: "must be too low" in out, "silently wrong"),
}


def adversary_files(tmp: Path) -> None:
    """What the adversary's cases read: the synthetic model, the loops, hand-edited run and sweep files."""
    import json

    from test_nothing_lost import EXITING_LOOP
    from timelines import synthetic_run

    from llmprof.runfile import save_run
    from llmprof.sweepfile import Sweep, SweepPoint, save_sweep
    from llmprof.workloads.synthetic import save_synthetic

    save_synthetic(tmp / "syn", prefill_ms=1.0, decode_ms=1.0)
    (tmp / "llmprof_exits.py").write_text(EXITING_LOOP)
    for name, model in (("sweep-a.json", "one"), ("sweep-b.json", "other")):
        run = synthetic_run(10.0)
        run.config = {"model": model, "batch_size": 1}
        save_sweep(
            Sweep({"batch_size": [1]}, {"model": model}, [SweepPoint({"batch_size": 1}, run=run)]), tmp / name
        )
    relabelled = json.loads((tmp / "sweep-a.json").read_text())
    relabelled["axes"]["batch_size"] = [4]
    relabelled["points"][0]["params"]["batch_size"] = 4
    (tmp / "relabelled.json").write_text(json.dumps(relabelled))
    contradicting = synthetic_run(10.0)
    contradicting.config = {"batch_size": 64}
    save_run(contradicting, tmp / "contradicting.json")


def classify(case: str, argv: list[str], expected: str, tmp: Path, env: dict[str, str]) -> str:
    keep = tmp / "keep.json"
    keep.write_text(SENTINEL)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "llmprof", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hang"
    if result.returncode < 0:
        return "killed"
    if "Traceback" in result.stderr:
        return "traceback"
    if keep.read_text() != SENTINEL:
        return "data loss"
    check, failed = CHECKS.get(case, (None, ""))
    if check is not None and not check(result.stdout + result.stderr, tmp):
        return failed
    if expected == GATE:
        return "clean" if result.returncode == 1 else "silently wrong"
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
        adversary_files(tmp)
        env = {**os.environ, "HF_ENDPOINT": "https://hub.invalid"}
        for case, argv, expected in cases(tmp):
            if args.only and args.only not in case:
                continue
            argv = [
                a.format(tmp=tmp, run=tmp / "run.json", keep=tmp / "keep.json", syn=tmp / "syn") for a in argv
            ]
            outcome = classify(case, argv, expected, tmp, env)
            counts[outcome] += 1
            if outcome != "clean":
                print(f"{outcome}: {case}: llmprof {' '.join(argv)}")
    tried = sum(counts.values())
    print(f"CLI cases: {tried} tried, " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)))
    return 0 if counts["clean"] == tried else 1


if __name__ == "__main__":
    raise SystemExit(main())
