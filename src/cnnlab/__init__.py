"""cnnlab: the classic convolutional network architectures, faithful, measured, trained and taken apart."""

import torch as _torch

# torch < 2.10 has an unsafe ``torch.load(weights_only=True)`` (CVE-2026-24747): a crafted file can
# execute code. cnnlab loads weights from the internet, so it refuses to run on such a torch.
_MIN_TORCH = (2, 10)


def _torch_version(version: str) -> tuple[int, int]:
    major, minor = version.split("+")[0].split(".")[:2]
    return int(major), int(minor)


if _torch_version(_torch.__version__) < _MIN_TORCH:
    raise ImportError(
        f"cnnlab needs torch >= {_MIN_TORCH[0]}.{_MIN_TORCH[1]} (found {_torch.__version__}): older "
        "releases load weights unsafely (CVE-2026-24747). Upgrade with: pip install -U 'torch>=2.10'"
    )

from cnnlab.errors import CnnlabError, ConfigError, DatasetError, UnknownNameError  # noqa: E402
from cnnlab.models import create_model, list_models, model_info  # noqa: E402
from cnnlab.analysis import analyze  # noqa: E402,F401  (cnnlab.analyze)

__version__ = "0.1.0"

# Attributes loaded on first use, so that `import cnnlab` stays light (the export package is not
# imported until `cnnlab.Predictor` is asked for).
_LAZY = {"Predictor": "cnnlab.export.predictor"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

__all__ = [
    "CnnlabError",
    "ConfigError",
    "DatasetError",
    "UnknownNameError",
    "create_model",
    "list_models",
    "model_info",
    "__version__",
]
