"""Every sub-command, given a bad argument, says so on one line of stderr and exits with code 2.

The sub-commands and their options are read from the parser itself (``build_parser``), so a
sub-command added later is covered without editing this file: an unknown flag, a bad value for every
option that has choices or a type, and a name that does not exist for the positional arguments.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from cnnlab.cli import build_parser
from cli_helpers import run_cli as _run

BAD = "no-such-thing"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


SUBCOMMANDS = _subparsers()


def _rejects(action: argparse.Action, value: str) -> bool:
    """Whether argparse refuses ``value`` for ``action`` (its choices or its type)."""
    if action.choices is not None:
        return value not in action.choices
    if action.type is None or action.type is str:
        return False
    try:
        action.type(value)
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return True
    return False


def _bad_option_cases() -> list[tuple[str, str, list[str]]]:
    cases = []
    for command, sub in SUBCOMMANDS.items():
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.dest == "help":
                continue
            for value in (BAD, "-1.5e999"):
                if _rejects(action, value):
                    cases.append((command, action.option_strings[-1], [action.option_strings[-1], value]))
                    break
    return cases


def _positionals(sub: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in sub._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _one_line(rc: int, err: str, argv: list[str]) -> None:
    assert rc == 2, (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab"), (argv, err)


def test_the_parser_lists_the_known_sub_commands():
    assert {"list", "summary", "compare", "train", "eval", "experiment"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_unknown_flag(command, capsys):
    argv = [command, *([BAD] if any(a.nargs in (None, "+") for a in _positionals(SUBCOMMANDS[command])) else []),
            "--no-such-flag"]
    rc, _, err = _run(argv, capsys)
    _one_line(rc, err, argv)


@pytest.mark.parametrize("command, flag, argv", _bad_option_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_option_value(command, flag, argv, capsys):
    positional = [BAD] if any(a.nargs in (None, "+") for a in _positionals(SUBCOMMANDS[command])) else []
    argv = [command, *positional, *argv]
    rc, _, err = _run(argv, capsys)
    _one_line(rc, err, argv)
    assert flag in err or "argument" in err, err


@pytest.mark.parametrize("command", sorted(c for c, s in SUBCOMMANDS.items()
                                           if any(a.dest != "pattern" for a in _positionals(s))))
def test_a_name_that_does_not_exist(command, capsys):
    """A positional naming nothing that exists (a model, an experiment, a weights file) is one line, exit 2
    (``list PATTERN`` is a search: matching nothing is its answer, not an error)."""
    argv = [command, *[BAD for a in _positionals(SUBCOMMANDS[command]) if a.dest != "pattern"]]
    rc, _, err = _run(argv, capsys)
    _one_line(rc, err, argv)
    if not any(a.required for a in SUBCOMMANDS[command]._actions if a.option_strings):
        assert BAD in err, err  # (else argparse first names the missing required option, also one line)


def test_entry_point_in_a_fresh_process():
    """`python -m cnnlab` itself (the in-process tests above cover every sub-command): one line, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", BAD, "--no-such-flag"],
                          capture_output=True, text=True, timeout=120)
    _one_line(proc.returncode, proc.stderr, ["train"])
