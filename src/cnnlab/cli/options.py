"""Argument types and parsers the sub-commands share (one parser of positive integers, of
``FIELD=VALUE`` pairs, ... for every command)."""

from __future__ import annotations

import argparse
import ast
import math
from typing import Any

from cnnlab.errors import ConfigError

__all__ = ["positive_int", "nonneg_int", "positive_float", "finite_float", "seed_int", "threads_int", "bounded_int", "capped_int",
           "pairs", "guard_outputs", "threads_option"]


def _int_at_least(low: int, text: str, words: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(1, text, "a positive integer")


def nonneg_int(text: str) -> int:
    return _int_at_least(0, text, "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number (no nan, inf, or 1e999, which reads as inf); the command checks its range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def bounded_int(low: int, high: int, *, why: str = ""):
    """An argparse type: an integer in ``low..high``; ``why`` ends the message (what the bound protects)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low:,}..{high:,}{why}, got {text!r}")
        return value

    parse.__name__ = f"integer in {low}..{high}"  # argparse names the type in some messages
    return parse


def capped_int(limit: str, *, low: int = 1):
    """An argparse type: an integer from ``low`` to ``cnnlab.limits.<limit>`` (a batch size, a count of
    epochs, images or passes); the message names the cap, argparse names the flag."""
    from cnnlab import limits

    high = getattr(limits, limit)
    return bounded_int(low, high, why=f" (cnnlab.limits.{limit})")


def seed_int(text: str) -> int:
    """A random seed: torch takes a signed 64-bit integer."""
    from cnnlab.limits import MAX_SEED

    return bounded_int(0, MAX_SEED, why=" (a 64-bit seed)")(text)


def threads_int(text: str) -> int:
    """A CPU thread count (too many abort the OpenMP runtime, with no error to catch)."""
    from cnnlab.limits import MAX_THREADS

    return bounded_int(1, MAX_THREADS)(text)


_NOT_FINITE = ("nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")


def _value(text: str) -> Any:
    """A --set value: true/false/none, a number, a tuple "100,150", or else the string itself."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    if low in _NOT_FINITE:  # float() reads these; a --set value must be a finite number
        raise ConfigError(f"{text!r} is not a finite number")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, (int, float, bool, tuple, str)):
        return text
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, float) and not math.isfinite(v):  # 1e999 parses as inf
            raise ConfigError(f"{text!r} is not a finite number")
    return value


def pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``--model-set``-style ``FIELD=VALUE`` items as a dict (dashes in a field become underscores)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects FIELD=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = _value(text)
        except ConfigError as err:
            raise ConfigError(f"{flag} {item}: {err}") from None
    return out


def guard_outputs(p: argparse.ArgumentParser) -> None:
    """The command writes into places the user names: it never replaces a file cnnlab did not write
    there, unless --force (see ``cnnlab.atomic.replace_guard``)."""
    p.add_argument("--force", action="store_true",
                   help="replace output files of the same name that cnnlab did not write (default: refuse)")
    p.set_defaults(guard_outputs=True)


def threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads while the command runs (set back afterwards)."""
    p.add_argument("--threads", type=threads_int, help="CPU threads for torch (default: torch's, one per core)")
    p.set_defaults(apply_threads=True)
