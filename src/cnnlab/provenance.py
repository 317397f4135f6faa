"""The one version stamp of what cnnlab writes: the libraries' versions and the git commit of the code.

A training run's ``config.json`` and an experiment's ``results.json`` both record these, so that a
result can be traced to the code that produced it. Imports nothing else of the package but its
version, so every layer may use it.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

__all__ = ["library_versions", "git_commit"]


def library_versions() -> dict[str, str]:
    """Python, torch, torchvision, numpy and cnnlab versions, and the platform."""
    import numpy
    import torch
    import torchvision

    from cnnlab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "cnnlab": __version__, "platform": platform.platform()}


def git_commit() -> str | None:
    """The commit of the checkout cnnlab runs from, with ``-dirty`` when tracked files differ from it;
    None outside a git checkout (an installed wheel) or without git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
