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
from cnnlab.export.predictor import Predictor  # noqa: E402,F401  (cnnlab.Predictor)

__version__ = "0.1.0"

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
