"""Running ``cnnlab`` in-process from the tests, and the one-line error every bad input must give."""

from __future__ import annotations

import pytest
import torch

from cnnlab.cli import main


@pytest.fixture
def isolated_cwd(tmp_path, monkeypatch):
    """Run in a fresh folder (commands write runs/, viz/ ... there) and give torch's thread count back."""
    monkeypatch.chdir(tmp_path)
    n = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(n)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``cnnlab ARGV`` run in this process (argparse's SystemExit caught)."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(rc: int, err: str, *needles: str) -> str:
    """Assert exit code 2 and a one-line error on stderr (no traceback) containing each needle; the line."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def tiny_experiment_runs(names, root) -> dict:
    """``{name: (results, out folder)}`` of each experiment in ``names`` at the tiny scale, one thread,
    sharing one model cache (for a module-scoped fixture)."""
    from cnnlab.experiments import ModelCache, run_experiment

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cache = ModelCache()
    try:
        return {name: (run_experiment(name, scale="tiny", out_dir=root / name, progress=False, cache=cache), root / name)
                for name in names}
    finally:
        torch.set_num_threads(before)
