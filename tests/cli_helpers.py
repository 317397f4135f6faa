"""Running ``cnnlab`` in-process from the tests, and the one-line error every bad input must give."""

from __future__ import annotations

from cnnlab.cli import main


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
