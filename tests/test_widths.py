"""Terminal tables as wide as the terminal: with COLUMNS=80 every line of `compare` (two runs, two sweeps),
`ab`, a sweep's report and the kernel tables is at most 80 characters and every cell is whole (numbers on one
line, text wrapped or folded, nothing cut); a wide terminal keeps the full layout."""

import pytest
from run_cli import run_in_process
from test_compare import jittered_run
from test_kernels import capture_of

from llmprof.report.kernels import kernel_sections
from llmprof.runfile import save_run
from llmprof.sweepfile import REFUSED, Sweep, SweepPoint, save_sweep
from llmprof.workloads.synthetic import save_synthetic

KERNEL = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, at::Array<char*, 3>>"
REASON = (
    "a batch of 4 x (512 + 128) tokens needs about 80.0 GiB beyond the weights (KV cache 64.0, logits 0.0,"
    " activations 16.0) and cuda:0 has 70.0 GiB free: lower --batch-size, --prompt-len or --max-new-tokens"
)
STEPS = list(range(2, 10))


def stdout(capsys, *args: str) -> str:
    """The standard output of the CLI (which must succeed)."""
    result = run_in_process(capsys, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def shown(capsys, monkeypatch, columns: int, *args: str) -> str:
    """The standard output of the CLI at ``columns`` columns, each of its lines checked to fit them."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = stdout(capsys, *args)
    assert max(len(line) for line in out.splitlines()) <= columns
    return out


def cells(text: str, key: int) -> list[list[str]]:
    """The rows of the terminal tables in ``text``, each cell's lines joined and its spaces dropped: a line
    whose cell ``key`` is empty continues the row above (its wrapped or folded text)."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("│"):
            row = [cell.strip() for cell in line.rstrip()[1:-1].split("│")]
            if row[key] or not rows:
                rows.append(row)
            else:
                rows[-1] = [above + more for above, more in zip(rows[-1], row)]
    return [[cell.replace(" ", "") for cell in row] for row in rows]


def markdown(text: str) -> list[list[str]]:
    """The rows of the Markdown tables in ``text`` (not their headers), the spaces of each cell dropped."""
    lines = text.splitlines()
    rows = [
        line[2:-2].split(" | ")
        for line, after in zip(lines, [*lines[1:], ""])
        if line.startswith("| ") and not after.startswith("| ---")
    ]
    return [[cell.replace(" ", "") for cell in row] for row in rows if not row[0].startswith("---")]


def without(rows: list[list[str]], dropped: list[int]) -> list[list[str]]:
    return [[cell for i, cell in enumerate(row) if i not in dropped] for row in rows]


def lines_below(text: str) -> str:
    """The lines after the last table, joined as the text they wrap."""
    return " ".join(text[text.rindex("┘") + 1 :].split())


@pytest.fixture
def runs(tmp_path) -> tuple[str, str]:
    """Two saved runs of 8 repeats, B 10% slower, each with a kernel capture (a long CUDA kernel name)."""
    paths = []
    for name, decode_ms, kernel_ms in (("a", 10.0, 1.0), ("b", 11.0, 2.0)):
        run = jittered_run(decode_ms, seed=len(paths))
        run.kernels = capture_of({KERNEL: [kernel_ms] * 8, "aten::mm": [2.0] * 8}, STEPS)
        paths.append(str(tmp_path / f"{name}.json"))
        save_run(run, paths[-1])
    return paths[0], paths[1]


@pytest.mark.parametrize("columns", [80, 200])
def test_compare_and_its_kernel_diff_fit_the_terminal_with_every_cell_whole(
    runs, capsys, monkeypatch, columns
):
    out = shown(capsys, monkeypatch, columns, "compare", *runs)
    md = markdown(stdout(capsys, "compare", *runs, "--format", "md"))
    table = cells(out, key=1)
    assert len(table) == len(md) and table[-2][0] == KERNEL.replace(" ", "")
    kernel_rows = len(md) - 2  # the kernel diff: its 2 rows come last
    if columns == 80:  # short headers, the units in a caption; the kernel diff without its CI
        assert "┃ metric" in out and " A ┃" in out and "A median" not in out and "95% CI: of B / A" in out
        assert (
            "(95% CI of B - A left out at 80 columns: a wider terminal or --format md shows it)"
            in lines_below(out)
        )
        assert table == md[:kernel_rows] + without(md[kernel_rows:], [4])
    else:  # today's layout, every cell on one line
        assert "┃ A median ┃" in out and " 95% CI of B - A ┃" in out and "left out" not in out
        assert table == md


def test_ab_fits_an_80_column_terminal(tmp_path, capsys, monkeypatch):
    model = save_synthetic(tmp_path / "model", prefill_ms=1.0, decode_ms=1.0)
    (tmp_path / "llmprof_test_widths.py").write_text(
        "def slower(model):\n    model.config.decode_ms *= 1.5\n"
    )
    monkeypatch.chdir(tmp_path)
    args = f"ab --model {model} --b patch=llmprof_test_widths:slower --repeats 4 --prompt-len 4"
    args += " --max-new-tokens 6 --no-telemetry --json-a a.json --json-b b.json"
    out = shown(capsys, monkeypatch, 80, *args.split())
    md = markdown(stdout(capsys, "compare", "a.json", "b.json", "--format", "md"))
    assert cells(out, key=1) == md and "95% CI: of B / A" in out  # the same rows as compare gives them


def test_the_kernel_table_of_a_run_folds_a_long_name_and_keeps_its_numbers(runs, capsys, monkeypatch):
    from llmprof.runfile import load_run

    out = shown(capsys, monkeypatch, 80, "report", runs[0])
    (section,) = kernel_sections(load_run(runs[0]))[0]
    table = out[out.index("Kernels: decode") :]
    rows = cells(table[: table.index("┘")], key=2)
    assert rows == [[cell.replace(" ", "") for cell in row] for row in section.rows]


@pytest.fixture
def sweeps(tmp_path) -> tuple[str, str]:
    """Two saved sweeps of batch 1, 2 and 4 (prompt 4, gen 128), batch 4 refused (a long reason): B 10%
    slower, without batch 2."""
    paths = []
    for name, decode_ms in (("a", 10.0), ("b", 11.0)):
        sweep = Sweep({"batch_size": [1, 2, 4], "prompt_len": [4], "max_new_tokens": [128]})
        sweep.config = {"model": "meta-llama/Llama-3.1-8B-Instruct", "device": "cuda:0", "dtype": "bfloat16"}
        for batch in (1, 2) if name == "a" else (1,):
            params = {"batch_size": batch, "prompt_len": 4, "max_new_tokens": 128}
            sweep.points.append(SweepPoint(params, run=jittered_run(decode_ms, batch=batch, seed=batch)))
        params = {"batch_size": 4, "prompt_len": 4, "max_new_tokens": 128}
        sweep.points.append(SweepPoint(params, REFUSED, REASON))
        paths.append(str(tmp_path / f"{name}.json"))
        save_sweep(sweep, paths[-1])
    return paths[0], paths[1]


@pytest.mark.parametrize("columns", [80, 200])
def test_a_sweeps_report_fits_the_terminal_with_its_notes_below_it(sweeps, capsys, monkeypatch, columns):
    out = shown(capsys, monkeypatch, columns, "report", sweeps[0])
    md = markdown(stdout(capsys, "report", sweeps[0], "--format", "md"))
    table = cells(out, key=0)
    if columns == 80:  # the notes below the table, the units in a caption, decode TPS and floor TPOT left out
        assert table == without(md, [8, 10, 11]) and "┃  TTFT ┃" in out
        assert "TTFT, TPOT, ITL p99 in ms; TPS in tok/s" in out
        below = lines_below(out)
        assert f"batch_size=4 prompt_len=4 max_new_tokens=128: {REASON}" in below
        assert (
            "(decode TPS, floor TPOT left out at 80 columns: a wider terminal or --format md shows them)"
            in below
        )
    else:  # today's layout: the notes in their column
        assert table == md and "┃ TTFT (ms) ┃" in out and "┃ note" in out and lines_below(out) == ""


@pytest.mark.parametrize("columns", [80, 200])
def test_compare_of_two_sweeps_fits_the_terminal_one_row_per_metric_when_narrow(
    sweeps, capsys, monkeypatch, columns
):
    out = shown(capsys, monkeypatch, columns, "compare", *sweeps)
    md = markdown(stdout(capsys, "compare", *sweeps, "--format", "md"))
    if columns == 80:  # a row per point and metric, the point's axes on its first row
        long = [
            [*(row[:3] if i == 0 else [""] * 3), metric, *row[3 + 3 * i : 6 + 3 * i]]
            for row in md
            for i, metric in enumerate(("TTFT", "TPOT", "TPS"))
        ]
        assert cells(out, key=3) == long and "┃ metric ┃" in out
        assert [row[-1] for row in long[3:6]] == ["notmeasuredinB"] * 3
    else:
        assert cells(out, key=0) == [row[:-1] for row in md] and "┃ TTFT B / A ┃" in out
