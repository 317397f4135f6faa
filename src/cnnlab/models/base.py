"""The interface every zoo model shares.

``forward(x)`` always returns logits, in training and in evaluation. Models with auxiliary
classifiers (GoogLeNet 2014) expose them through :meth:`Classifier.forward_train`, which returns a
:class:`ModelOutput` whatever the model, so the training engine needs no model-specific code.

``feature_info`` lists the stages, in order, as timm does: ``{"module": name, "num_chs": C,
"reduction": stride}``; ``module`` is a name in ``named_modules()``, so probes and lesion studies
address layers by name.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class ModelOutput(NamedTuple):
    """Logits plus the auxiliary classifiers' logits and their loss weights (empty for most models)."""

    logits: Tensor
    aux_logits: tuple[Tensor, ...] = ()
    aux_weights: tuple[float, ...] = ()


class Classifier(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses define ``forward_features`` (image to the last feature map) and ``forward_head``
    (feature map to logits), and set ``feature_info``.
    """

    feature_info: list[dict]

    def __init__(self) -> None:
        super().__init__()
        self.feature_info = []

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Logits and any auxiliary logits with their loss weights; the engine trains on this."""
        return ModelOutput(self(x))

    @torch.no_grad()
    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
