"""Nothing measured is lost and nothing kept is clobbered, whatever the loop, the disk or the signals do: the
cases an adversary found (a sweep every point of which is refused, a loop that exits, a full disk, a burst of
Ctrl-C, a depth that cannot be sized)."""

import pytest
from run_cli import run_in_process

from llmprof.workloads.synthetic import save_synthetic

SENTINEL = "an older sweep, to be replaced only by a sweep that measured something\n"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return save_synthetic(tmp_path_factory.mktemp("models") / "syn", prefill_ms=1.0, decode_ms=1.0)


def test_a_sweep_that_measured_nothing_leaves_an_existing_file_as_it_was(synthetic, tmp_path, capsys):
    path = tmp_path / "sweep.json"
    path.write_text(SENTINEL)
    result = run_in_process(
        capsys, "sweep", "--model", str(synthetic), "--batch-size", "99999999999999999999", "--prompt-len", "4",
        "--max-new-tokens", "2", "--repeats", "1", "--no-telemetry", "--json", str(path),
    )  # fmt: skip
    assert (
        result.returncode == 1 and f"llmprof: nothing was measured: {path} is left as it was" in result.stderr
    )
    assert path.read_text() == SENTINEL
    assert "refused" in result.stdout  # the table still says why each point was refused
