"""Errors a user can fix. The CLI prints them on one line and exits with code 2.

Every module of cnnlab raises these (or plain ``ValueError`` for bad arguments in the Python API),
so that bad input never ends in a traceback on the command line. :func:`did_you_mean` (built on
:func:`closest_names`) is the one "did you mean" hint that every unknown-name error ends with.
"""

import difflib


class CnnlabError(Exception):
    """Base class: bad input that the user can fix (a name, a value, a file)."""


class ConfigError(CnnlabError, ValueError):
    """A configuration value is invalid; the message names the field."""


class UnknownNameError(CnnlabError, LookupError):
    """A model, dataset, recipe or experiment name is unknown; the message lists the closest names."""


class DatasetError(CnnlabError):
    """A dataset file or folder is missing, malformed or unreadable; the message names the file."""


class WeightsError(CnnlabError):
    """A weights file cannot be loaded safely or does not match the model."""


class MissingExtraError(WeightsError):
    """Published weights whose optional package (an extra, e.g. ``cnnlab[imagenet]``) is not installed."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupted or does not match its manifest."""


class TrainingError(CnnlabError):
    """Training cannot go on (for example a NaN or infinite loss)."""


def closest_names(name: str, names: list[str], n: int = 5) -> list[str]:
    """The names in ``names`` closest to ``name`` (prefix matches first, then by similarity)."""
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    prefixed = [k for k in names if k.startswith(name) and k not in close]
    return (prefixed + close)[:n]


def did_you_mean(name: str, names, *, n: int = 5, prefix: str = "") -> str:
    """``"; did you mean a, b?"`` naming the :func:`closest_names` (each written with ``prefix``), or
    ``""`` when none is close: the tail of an unknown-name message."""
    close = closest_names(str(name), [str(k) for k in names], n=n)
    return f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
