"""The model zoo. ``models`` imports nothing else from the package (but ``cnnlab.errors``)."""

from cnnlab.models.base import Classifier, ModelOutput
from cnnlab.models.registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = [
    "Classifier",
    "ModelOutput",
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
