"""Errors a user can fix. The CLI prints them on one line and exits with code 2.

Every module of cnnlab raises these (or plain ``ValueError`` for bad arguments in the Python API),
so that bad input never ends in a traceback on the command line.
"""


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


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupted or does not match its manifest."""


class TrainingError(CnnlabError):
    """Training cannot go on (for example a NaN or infinite loss)."""
