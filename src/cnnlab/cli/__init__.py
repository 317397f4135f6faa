"""The ``cnnlab`` command. Each sub-command lives in its own module that parses and calls the library.

A sub-command module defines ``register(subparsers)``, which adds its parser(s) and sets
``func=run`` on them; ``run(args) -> int`` returns the exit code. Errors a user can fix
(:class:`cnnlab.errors.CnnlabError`, bad arguments) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import warnings
import sys

from cnnlab.errors import CnnlabError, closest_names

# Sub-command modules, in the order `cnnlab --help` shows them.
COMMAND_MODULES = (
    "cnnlab.cli.zoo",
    "cnnlab.cli.analyze",
    "cnnlab.cli.train",
    "cnnlab.cli.sweep",
    "cnnlab.cli.experiment",
    "cnnlab.cli.runs",
    "cnnlab.cli.data",
    "cnnlab.cli.report",
    "cnnlab.cli.foundations",
    "cnnlab.cli.viz",
    "cnnlab.cli.plot",
    "cnnlab.cli.diagram",
    "cnnlab.cli.export",
    "cnnlab.cli.generative",
    "cnnlab.cli.explore",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (``cnnlab train: error: ...``), exit code 2.

    Prefixes of flags are not expanded (``--model`` is not ``--model-set``): a flag is given whole."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")

    def unknown(self, extras: list[str]) -> None:
        """Refuse ``extras`` (arguments no option took), naming the closest flag of this command."""
        flags = [f for f in self._option_string_actions if f.startswith("--")]
        hints = {}
        for token in extras:
            flag = token.split("=", 1)[0]
            if not flag.startswith("--"):
                continue
            if flag.replace("_", "-") in flags:
                hints[flag] = flag.replace("_", "-")
            elif close := closest_names(flag, flags, n=1):
                hints[flag] = close[0]
        if len(hints) == 1:
            hint = f" (did you mean {next(iter(hints.values()))}?)"
        else:
            hint = f" (did you mean {', '.join(f'{a} -> {b}' for a, b in hints.items())}?)" if hints else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}; `{self.prog} --help` lists the options")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cnnlab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build, measure, train and take apart the classic convolutional networks of the lectures\n"
                    "(LeNet-5, AlexNet, VGG, GoogLeNet, ResNet, ...).",
        epilog="start here:\n"
               "  cnnlab train lenet5            train LeNet-5 on 5,000 MNIST digits (about 20 s on 2 cores)\n"
               "  cnnlab summary alexnet_2012    the lecture's AlexNet table, layer by layer\n"
               "  cnnlab experiment list         the lectures' claims, re-run\n"
               "`cnnlab COMMAND --help` explains a command and each of its options.")
    from cnnlab import __version__

    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.set_defaults(_commands=sub.choices)
    return parser


@contextlib.contextmanager
def _threads(n: int | None):
    """torch's CPU threads set to ``n`` for the command, then set back (None: leave them)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"cnnlab: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _one_line_warning  # a note for the user, not a source location
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = args._commands.get(args.command)
        (command if isinstance(command, ArgumentParser) else parser).unknown(extras)
    from cnnlab.atomic import replace_guard
    from cnnlab.errors import ConfigError

    # Commands that write into folders the user names refuse to replace files cnnlab did not write.
    guard = (replace_guard(force=bool(args.force), error=ConfigError) if getattr(args, "guard_outputs", False)
             else contextlib.nullcontext())
    try:
        with guard, _threads(getattr(args, "threads", None) if getattr(args, "apply_threads", False) else None):
            return int(args.func(args) or 0)
    except CnnlabError as err:
        print(f"cnnlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cnnlab list | head`: the reader left; say nothing more (before OSError, its base)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as err:
        # The machine said no (a full disk, a read-only or vanished folder): not a bug in cnnlab, and
        # not worth a traceback. What was already saved stays (every file is written atomically).
        where = f"{err.filename}: " if err.filename else ""
        print(f"cnnlab {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
