"""Text from files, shown on a terminal: control characters escaped.

A class name, a run folder's name or a model name read from a file can hold terminal escape
sequences (``\\x1b[2J`` clears the screen, others retitle the window or fake earlier output). Every
place that prints such text passes it through :func:`for_terminal`. Like :mod:`cnnlab.errors` this
module imports nothing else of the package.
"""

from __future__ import annotations

__all__ = ["for_terminal"]


def for_terminal(text: object) -> str:
    """``text`` as it is when every character is printable, else its Python ``repr`` (quoted, with
    ``\\x1b``, ``\\n``, ``\\u202e``... escaped), so that the reader sees what the file holds."""
    text = str(text)
    return text if text.isprintable() else repr(text)
