"""`cnnlab --help` speaks to users, and every option of every sub-command says what it does."""

from __future__ import annotations

import argparse

import pytest

from cnnlab.cli import build_parser, main


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_top_level_help_names_commands_and_a_first_step(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "cnnlab train lenet5" in text and "module" not in text.lower()


def test_every_option_of_every_command_has_help():
    _, commands = _subparsers()
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, sub in commands.items() for a in sub._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())]
    assert not missing, f"options without help: {missing}"


def test_every_command_has_a_one_line_help_and_a_description():
    parser, commands = _subparsers()
    helps = {c.dest: c.help for c in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))._choices_actions}
    for name, sub in commands.items():
        assert helps.get(name), f"{name} has no help line in `cnnlab --help`"
        assert sub.description, f"{name} has no description"
