"""Several ranks of one job: the per-step skew and slowest rank of hand-built timelines (known exactly), the
run file's ranks, the --tp checks, and `torchrun --nproc-per-node 2` with gloo on a tiny tensor-parallel
Llama, one rank delayed by a patch."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from timelines import MS, host_marks, record

from examples import slow_rank
from llmprof.analysis.ranks import RankTimeline, ranks_report
from llmprof.cli import main
from llmprof.errors import ModelLoadError, RunFormatError
from llmprof.runfile import Run, load_run, save_run

DELAY_MS = slow_rank.DELAY_S * 1e3


def shifted(marks, after_ms):
    """``marks`` with every mark from the first token on ``after_ms`` later (a rank slower after its work)."""
    out, late = [], False
    for label, step, t in marks:
        late = late or int(label) == 4
        out.append((label, step, t + (after_ms if late else 0.0)))
    return out


def timelines(offset_ms=0.0, tokens=(4, 4)):
    base = host_marks(4)
    return [
        RankTimeline(0, "a", records=[record(base, [tokens[0]], warmup=True), record(base, [tokens[0]])]),
        RankTimeline(
            1,
            "b",
            offset_ns=round(-offset_ms * MS),
            uncertainty_ns=2000,
            records=[
                record(base, [tokens[1]], warmup=True),
                record(shifted(base, offset_ms + 5.0), [tokens[1]]),
            ],
        ),
    ]


def test_the_skew_of_each_step_is_the_spread_of_the_ranks_token_times_on_rank_0s_clock():
    report = ranks_report(timelines())
    assert [s.step for s in report.skews] == [1, 2, 3, 4]  # the measured request only, every token
    assert all(s.token_skew_ns == 5 * MS and s.slowest == 1 for s in report.skews)
    assert [s.forward_end_skew_ns for s in report.skews] == [
        0,
        5 * MS,
        5 * MS,
        5 * MS,
    ]  # prefill ends together
    assert report.slowest_rank == 1 and report.clock_uncertainty_ns == 2000 and not report.warnings
    # a rank 30 ms ahead on its own clock, its offset measured: the same 5 ms
    assert all(s.token_skew_ns == 5 * MS for s in ranks_report(timelines(offset_ms=30.0)).skews)


def test_ranks_that_counted_different_tokens_are_said():
    report = ranks_report(timelines(tokens=(4, 3)))
    assert report.warnings == ["the ranks counted different tokens per request: rank 0: [4]; rank 1: [3]"]


def test_the_run_file_keeps_every_rank_and_refuses_a_broken_one(tmp_path):
    ranks = timelines()
    run = Run(config={"model": "m"}, environment={}, records=ranks[0].records, ranks=ranks)
    path = tmp_path / "run.json"
    save_run(run, path)
    data = json.loads(path.read_text())
    assert (
        "requests" not in data["ranks"][0] and len(data["ranks"][1]["requests"]) == 2
    )  # rank 0's: the run's
    loaded = load_run(path)
    assert [t.rank for t in loaded.ranks] == [0, 1] and loaded.ranks[0].records is loaded.records
    assert loaded.ranks[1].records[1].host_ns == ranks[1].records[1].host_ns
    for change, message in (
        (lambda d: d["ranks"][1].update(rank=0), "ranks[1].rank: rank 0 is listed twice"),
        (lambda d: d["ranks"][0].update(requests=[]), "ranks[0].requests: the first rank's requests"),
        (lambda d: d["ranks"][1].pop("offset_ns"), "ranks[1].offset_ns: missing"),
        (lambda d: d["ranks"][1]["requests"][1].update(tokens_per_sequence=[0]), "ranks[1].requests[1]"),
    ):
        broken = json.loads(json.dumps(data))
        change(broken)
        path.write_text(json.dumps(broken))
        with pytest.raises(RunFormatError, match="malformed llmprof run") as error:
            load_run(path)
        assert message in str(error.value)


def test_tp_needs_torchrun_and_torchrun_needs_tp(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["run", "--tp"]) == 2
    assert "--tp shards the model over the ranks of a torchrun job" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run"]) == 2
    assert "under torchrun, run profiles a model sharded over the ranks: add --tp" in capsys.readouterr().err
    for command in (["ab", "--b", "attn=eager"], ["sweep"]):
        assert main(command) == 2
        assert f"{command[0]} does not run over torchrun ranks yet" in capsys.readouterr().err


def test_a_world_size_that_does_not_divide_the_heads_or_no_accelerate_is_one_line(monkeypatch):
    import importlib.util

    from llmprof.workloads.models import load_model

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ModelLoadError, match="has 8 attention heads, which 3 ranks do not divide"):
        load_model("demo", "cpu", tp=True)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "accelerate" else find_spec(name)
    )
    with pytest.raises(ModelLoadError, match=r"needs accelerate: pip install 'llmprof\[dist\]'"):
        load_model("demo", "cpu", tp=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny Llama (4 heads, 2 KV heads) with the demo's tokenizer, saved."""
    from tiny_models import tiny_llama

    from llmprof.workloads.demo import train_demo_tokenizer

    path = tmp_path_factory.mktemp("tp")
    tokenizer = train_demo_tokenizer()
    tiny_llama(vocab_size=len(tokenizer)).save_pretrained(path / "llama")
    tokenizer.save_pretrained(path / "llama")
    return path


def torchrun(cwd, *args):
    """``torchrun --nproc-per-node 2 ARGS`` in ``cwd`` (importable), finished."""
    repo = Path(__file__).resolve().parent.parent  # examples/ importable too
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(cwd), str(repo)])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args]
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return result


def tp_run(tiny_dir, patch, repeats, out):
    """`run --tp` of the tiny Llama: 8 prompt tokens, 6 generated, ``patch`` applied, saved to ``out``."""
    args = ["run", "--tp", "--model", str(tiny_dir / "llama"), "--prompt-len", "8", "--max-new-tokens", "6"]
    return [
        *args,
        "--repeats",
        str(repeats),
        "--no-telemetry",
        "--ignore-eos",
        "--patch",
        patch,
        "--json",
        str(out),
    ]


@pytest.mark.slow
def test_torchrun_tp_gives_one_run_with_a_timeline_per_rank_and_the_delayed_rank_slowest(tiny_dir):
    out = tiny_dir / "run.json"
    args = tp_run(tiny_dir, "examples.slow_rank:rank1", 3, out)  # 40 ms after each forward of rank 1
    pytest.importorskip("accelerate")
    result = torchrun(tiny_dir, "-m", "llmprof", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Ranks (2, medians") == 1  # rank 0 alone prints
    assert "slowest rank: 1" in result.stdout
    run = load_run(out)
    assert run.config["world_size"] == 2 and [t.rank for t in run.ranks] == [0, 1]
    report = ranks_report(run.ranks)
    assert [r.output_tokens for r in report.ranks] == [[6, 6, 6]] * 2 and not report.warnings
    assert report.slowest_rank == 1 and report.ranks[1].slowest_steps == len(report.skews) == 3 * 6
    skew = statistics.median(report.token_skews_s()) * 1e3
    assert DELAY_MS * 0.8 <= skew <= DELAY_MS * 1.6  # rank 1's tokens come a sleep after rank 0's
    trace = tiny_dir / "trace.json"
    assert main(["report", str(out), "--format", "trace", "-o", str(trace)]) == 0
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names[1].endswith("rank 0 (" + run.ranks[0].hostname + ")") and names[101].startswith("rank 1 (")
    tokens = {
        pid: [e["ts"] for e in events if e["pid"] == pid and e.get("cat") == "token"] for pid in (1, 101)
    }
    assert len(tokens[1]) == len(tokens[101]) == 4 * 6 and min(tokens[1] + tokens[101]) >= 0
    lateness = statistics.median(b - a for a, b in zip(tokens[1], tokens[101])) / 1e3  # us -> ms, one clock
    assert lateness == pytest.approx(skew, abs=1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "failure",
    ["raise RuntimeError('rank 1 broke')", "os.kill(os.getpid(), signal.SIGKILL)"],
    ids=["raises", "killed"],
)
def test_a_rank_that_fails_or_is_killed_mid_run_leaves_rank_0_with_what_it_measured(tiny_dir, failure):
    (tiny_dir / "llmprof_test_fail_rank.py").write_text(
        "import os, signal\n\n"
        "def rank1(model):\n"
        "    calls = []\n\n"
        "    def fail(*_):\n"
        "        calls.append(1)\n"
        "        if os.environ['RANK'] == '1' and len(calls) > 20:  # in the fourth call\n"
        f"            {failure}\n\n"
        "    model.register_forward_hook(fail)\n"
    )
    out = tiny_dir / "failed.json"
    out.unlink(missing_ok=True)
    # rank 1's gather gives up after the timeout, which ends the collective rank 0 waits in
    args = [*tp_run(tiny_dir, "llmprof_test_fail_rank:rank1", 5, out), "--rank-timeout", "8"]
    pytest.importorskip("accelerate")
    result = torchrun(tiny_dir, "-m", "llmprof", *args)
    assert result.returncode != 0
    assert "the ranks' timelines were not gathered" in result.stderr
    run = load_run(out)  # rank 0 saved the repeats it finished
    assert 1 <= len(run.measured) < 5 and run.interrupted and run.ranks is None


@pytest.mark.slow
def test_save_ranks_gathers_a_torchrun_script_of_ones_own_into_one_run(tmp_path):
    script = tmp_path / "llmprof_test_mine.py"
    script.write_text(
        "import os, sys, time\n"
        "import torch.distributed as dist\n"
        "import llmprof\n\n"
        "dist.init_process_group('gloo')\n"
        "rec = llmprof.Recorder('cpu')\n"
        "for _ in range(2):\n"
        "    dist.barrier()  # the ranks start each request together\n"
        "    with rec.request(prompt_tokens=4):\n"
        "        for step in range(3):\n"
        "            with rec.forward():\n"
        f"                time.sleep(0.005 + ({DELAY_MS / 1e3} if dist.get_rank() == 1 else 0))\n"
        "            rec.token()\n"
        "run = llmprof.save_ranks(rec.records, sys.argv[1], {'model': 'mine'})\n"
        "got = None if run is None else len(run.ranks)\n"
        "sys.stdout.write(f'rank {dist.get_rank()} got {got}\\n')  # one write: the ranks share the pipe\n"
    )
    out = tmp_path / "run.json"
    result = torchrun(tmp_path, str(script), str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rank 0 got 2" in result.stdout and "rank 1 got None" in result.stdout, result.stdout
    run = load_run(out)
    report = ranks_report(run.ranks)
    assert run.config == {"model": "mine", "world_size": 2, "dist_backend": "gloo"}
    assert [r.output_tokens for r in report.ranks] == [[3, 3]] * 2 and report.slowest_rank == 1
    # each forward of rank 1 sleeps one delay more than rank 0's: the skew grows by a delay a step, whenever
    # the barrier let each rank go (differences cancel that; rank 0's own sleeps may overrun on a busy box)
    assert [s.step for s in report.skews] == [1, 2, 3] * 2, report.skews
    for first, _, last in (report.skews[:3], report.skews[3:]):
        assert last.token_skew_ns - first.token_skew_ns >= DELAY_MS * MS, report.skews


def test_the_report_shows_each_ranks_row_its_own_counters_and_the_skew(capsys, tmp_path):
    ranks = timelines()
    for energy, raw in zip((2.0, 3.0), ranks[1].records):
        raw.telemetry = {"energy_j": energy}  # the warm-up's 2 J is not counted: the measured request's 3 J
    run = Run(config={"model": "m"}, environment={}, records=ranks[0].records, ranks=ranks)
    save_run(run, tmp_path / "run.json")
    assert main(["report", str(tmp_path / "run.json"), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert (
        "| rank | host | TTFT (ms) | TPOT (ms) | tokens / request | energy / request (J) | slowest in |"
        in out
    )
    assert "| 0 | a | 43.00 | 16.50 | 4 | - | 0 of 4 steps | 0 (the reference) |" in out
    assert "| 1 | b | 48.00 | 16.50 | 4 | 3.000 | 4 of 4 steps | +0.0 us +- 2.0 us |" in out  # another host
    assert "token-time skew across ranks (max - min of T_k, per step): median 5.000 ms" in out
    assert "slowest rank: 1 (its token came last in 4 of 4 steps)" in out
    assert "the metrics, breakdown and telemetry above are rank 0's" in out
