"""The interface every zoo model shares.

``forward(x)`` always returns logits, in training and in evaluation. Models with auxiliary
classifiers (GoogLeNet 2014) expose them through :meth:`Classifier.forward_train`, which returns a
:class:`ModelOutput` whatever the model, so the training engine needs no model-specific code.

``feature_info`` lists the stages, in order, as timm does: ``{"module": name, "num_chs": C,
"reduction": stride}``; ``module`` is a name in ``named_modules()``, so probes and lesion studies
address layers by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from typing import NamedTuple

import torch
from torch import Tensor, nn


class ModelOutput(NamedTuple):
    """Logits plus the auxiliary classifiers' logits and their loss weights (empty for most models)."""

    logits: Tensor
    aux_logits: tuple[Tensor, ...] = ()
    aux_weights: tuple[float, ...] = ()


class FeatureInfo(list):
    """The stages as timm lists them (``{"module", "num_chs", "reduction"}`` dicts, in order), with
    timm's accessors: ``channels()``, ``reduction()``, ``module_name()`` (all stages, or ``idx``: one
    index or a sequence of them)."""

    def channels(self, idx: int | Sequence[int] | None = None):
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None):
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None):
        return self._get("module", idx)

    def _get(self, key: str, idx: int | Sequence[int] | None):
        if idx is None:
            return [d[key] for d in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]


class Classifier(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses define ``forward_features`` (image to the last feature map) and ``forward_head``
    (feature map to logits), and set ``feature_info``.
    """

    # Dotted name of the layer that produces the logits. None: the last ``nn.Linear`` in module
    # order (GoogLeNet registers its auxiliary heads before ``fc``, so they are never picked).
    classifier_name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.feature_info = []

    @property
    def feature_info(self) -> FeatureInfo:
        """The stages (timm's ``feature_info``); a list of dicts assigned here becomes a :class:`FeatureInfo`."""
        return self._feature_info

    @feature_info.setter
    def feature_info(self, stages: list[dict]) -> None:
        self._feature_info = FeatureInfo(stages)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Logits and any auxiliary logits with their loss weights; the engine trains on this."""
        return ModelOutput(self(x))

    def init_from_data(self, x: Tensor) -> None:
        """Data-dependent initialisation from training images ``x``, called by the engine before the
        first update (airbench's patch whitening); default: nothing."""

    # --- timm's classifier conventions -----------------------------------------------------------

    def _classifier_path(self) -> str:
        if self.classifier_name is not None:
            return self.classifier_name
        linear = [name for name, m in self.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise TypeError(f"{type(self).__name__} has no nn.Linear classifier; set classifier_name")
        return linear[-1]

    def get_classifier(self) -> nn.Module:
        """The layer that produces the logits (``nn.Identity`` after ``reset_classifier(0)``)."""
        return self.get_submodule(self._classifier_path())

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for ``num_classes``; 0 removes it (as timm), so that
        ``forward`` returns the pooled features the classifier would have read."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        path = self._classifier_path()
        old = self.get_submodule(path)
        if not hasattr(self, "_classifier_in"):  # remembered: an Identity no longer knows its width
            conv = isinstance(old, nn.Conv2d)
            self._classifier_in = (old.in_channels if conv else old.in_features, conv)
        n_in, conv = self._classifier_in
        if num_classes == 0:
            new: nn.Module = nn.Identity()
        elif conv:
            new = nn.Conv2d(n_in, num_classes, 1)  # NiN: a 1x1 convolution gives the class maps
        else:
            new = nn.Linear(n_in, num_classes)
        parent_name, _, child = path.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new)
        self.classifier_name = path  # the path stays valid once the layer is an Identity
        self.num_classes = num_classes

    @torch.no_grad()
    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class FeatureListNet(nn.Module):
    """``features_only=True`` (timm): ``forward(x)`` returns the maps of the model's stages, in order.

    The stages are the model's ``feature_info`` (``out_indices`` picks some); their outputs are
    caught by forward hooks while ``forward_features`` runs, so no model needs special code.
    """

    def __init__(self, model: Classifier, out_indices: tuple[int, ...] | None = None) -> None:
        super().__init__()
        infos = list(model.feature_info)
        if not infos:
            raise ValueError(f"{type(model).__name__} declares no feature_info stages")
        if out_indices is not None:
            try:
                infos = [infos[i] for i in out_indices]
            except (IndexError, TypeError):
                raise ValueError(f"out_indices {out_indices!r} outside the {len(model.feature_info)} stages") from None
        self.model = model
        self.feature_info = FeatureInfo(infos)
        self._maps: dict[str, Tensor] = {}
        for info in infos:
            model.get_submodule(info["module"]).register_forward_hook(self._catch(info["module"]))

    def _catch(self, name: str):
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            self._maps[name] = output

        return hook

    def forward(self, x: Tensor) -> list[Tensor]:
        self._maps = {}
        self.model.forward_features(x)
        maps, self._maps = self._maps, {}
        return [maps[info["module"]] for info in self.feature_info]
