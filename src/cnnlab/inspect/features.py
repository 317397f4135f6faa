"""What units respond to: feature maps per stage, the dataset patches that excite a unit most (cropped
with the analyzer's receptive field), and penultimate features in 2-D."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.inspect.layers import capture, model_device, resolve_layer, stage_names

__all__ = ["feature_maps", "contrast_norm_maps", "TopPatches", "top_patches", "layer_field", "penultimate_features", "embed_2d"]


@torch.no_grad()
def feature_maps(model: nn.Module, image: Tensor, *, layers: list[str] | None = None) -> dict[str, np.ndarray]:
    """The maps (C, H, W) of one ``image`` (C, H, W) at each layer (default: every ``feature_info`` stage)."""
    names = layers if layers else stage_names(model)
    was_training = model.training
    model.eval()
    try:
        with capture(model, names) as store:
            model(image.unsqueeze(0).to(model_device(model)))
    finally:
        model.train(was_training)
    out = {}
    for name in names:
        t = store.get(name)
        if t is None:
            raise ConfigError(f"--layer {name!r} did not run in the forward pass")
        if t.ndim != 4:
            raise ConfigError(f"--layer {name!r} outputs shape {tuple(t.shape)}, not feature maps (N, C, H, W)")
        out[name] = t[0].float().cpu().numpy()
    return out


@torch.no_grad()
def contrast_norm_maps(model: nn.Module, image: Tensor, *, layer: str | None = None,
                       kernel_size: int = 7) -> tuple[str, np.ndarray, np.ndarray]:
    """Lecture 000's "Feature Maps" / "Feature Maps After Contrast Normalization" for one ``image``.

    Returns ``(layer, before, after)``, maps (C, H, W). When ``layer`` is a
    :class:`~cnnlab.models.contrast_norm.LocalContrastNorm` of the model (``zfnet`` with
    ``norm="lcn"``), its input and its output; otherwise the layer's output and that output after a
    ``LocalContrastNorm(kernel_size)``. The default layer is the model's first contrast
    normalisation, else its first stage.
    """
    from cnnlab.models.contrast_norm import LocalContrastNorm

    own = [n for n, m in model.named_modules() if isinstance(m, LocalContrastNorm)]
    name = layer or (own[0] if own else stage_names(model)[0])
    module = resolve_layer(model, name)
    seen: dict[str, Tensor] = {}

    def hook(_m: nn.Module, args: tuple, out: Tensor) -> None:
        seen["in"], seen["out"] = args[0].detach(), out.detach()

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(image.unsqueeze(0).to(model_device(model)))
    finally:
        handle.remove()
        model.train(was_training)
    if "out" not in seen:
        raise ConfigError(f"--layer {name!r} did not run in the forward pass")
    if isinstance(module, LocalContrastNorm):
        before, after = seen["in"], seen["out"]
    else:
        before = seen["out"]
        if before.ndim != 4:
            raise ConfigError(f"--layer {name!r} outputs shape {tuple(before.shape)}, not feature maps (N, C, H, W)")
        after = LocalContrastNorm(kernel_size).to(before.device)(before.float())
    return name, before[0].float().cpu().numpy(), after[0].float().cpu().numpy()


def layer_field(model: nn.Module, layer: str, input_size: tuple[int, int, int]) -> tuple[tuple, tuple, tuple]:
    """``(rf, jump, start)`` per image axis (H, W) of ``layer``'s output, from :func:`cnnlab.analysis.analyze`.

    A stage name (a container such as ``layer2``) takes the field of its last executed row.
    """
    from cnnlab.analysis import analyze

    rows = [r for r in analyze(model, tuple(input_size)).layers
            if r.name.split(":")[0] == layer or r.name.startswith(layer + ".")]  # fmt: skip
    rows = [r for r in rows if r.receptive_field is not None and r.jump is not None and None not in r.jump]
    if not rows:
        raise ConfigError(f"--layer {layer!r}: the analyzer has no spatial receptive field for it")
    last = rows[-1]
    return tuple(last.receptive_field), tuple(last.jump), tuple(last.start)


@dataclass(frozen=True)
class TopPatches:
    """For each unit, the k images and positions where it fired most, and the crops of its field.

    ``boxes`` are (y0, x0, y1, x1) input pixels of the receptive field (y1, x1 exclusive, before
    clipping to the image); ``crops`` (units, k, C, rf_h, rf_w) hold those pixels, NaN outside the image.
    """

    layer: str
    units: tuple[int, ...]
    rf: tuple[float, float]
    index: np.ndarray  # (units, k) image indices into the searched images
    position: np.ndarray  # (units, k, 2) row, col of the unit in the layer's map
    value: np.ndarray  # (units, k) activation there
    boxes: np.ndarray  # (units, k, 4)
    crops: np.ndarray


@torch.no_grad()
def top_patches(model: nn.Module, images: Tensor, *, layer: str, units: list[int] | None = None, k: int = 9,
                batch_size: int = 256) -> TopPatches:
    """The ``k`` patches of ``images`` (N, C, H, W) that activate each unit (channel) of ``layer`` most
    (Zeiler & Fergus 2014, Fig. 2): each image's strongest position, top ``k`` images per unit."""
    resolve_layer(model, layer)  # a wrong name fails here, with the closest names
    n = images.shape[0]
    if k < 1 or k > n:
        raise ConfigError(f"top-patches: k must be in 1..{n} (the images searched), got {k}")
    rf, jump, start = layer_field(model, layer, tuple(images.shape[1:]))
    was_training = model.training
    model.eval()
    best_v, best_p = [], []
    try:
        with capture(model, [layer]) as store:
            for s in range(0, n, batch_size):
                model(images[s : s + batch_size].to(model_device(model)))
                a = store[layer].float().cpu()  # B x C x h x w
                if units is None:
                    units = list(range(min(a.shape[1], 8)))
                bad = [u for u in units if not 0 <= u < a.shape[1]]
                if bad:
                    raise ConfigError(f"top-patches: {layer!r} has {a.shape[1]} units; no unit {bad[0]}")
                flat = a[:, units].flatten(2)  # B x U x hw
                v, p = flat.max(2)
                best_v.append(v)
                best_p.append(torch.stack([p // a.shape[3], p % a.shape[3]], -1))
    finally:
        model.train(was_training)
    values, positions = torch.cat(best_v), torch.cat(best_p)  # N x U, N x U x 2
    top_v, top_i = values.topk(k, dim=0)  # k x U
    _warn_ties(top_v, units, layer)
    index = top_i.T.numpy()
    pos = np.stack([positions[top_i[:, u], u].numpy() for u in range(len(units))])  # U x k x 2
    boxes = _field_boxes(pos, rf, jump, start)
    crops = _crop(images.float().cpu().numpy(), index, boxes)
    return TopPatches(layer=layer, units=tuple(units), rf=(float(rf[0]), float(rf[1])), index=index,
                      position=pos, value=top_v.T.numpy(), boxes=boxes, crops=crops)  # fmt: skip


def _warn_ties(top_v: Tensor, units: list[int], layer: str) -> None:
    """Warn when a unit's top values are all one value (a saturated tanh sits at its bound, 1.7159 in
    LeNet-5): which images are shown among the tied ones is then arbitrary, not a ranking."""
    if top_v.shape[0] < 2:
        return
    first, last = top_v[0], top_v[-1]
    tied = [u for u, a, b in zip(units, first.tolist(), last.tolist()) if b >= a - 1e-3 * max(abs(a), 1e-6)]
    if tied:
        import warnings

        warnings.warn(f"top-patches: unit{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied[:8]))} of "
                      f"{layer!r} {'have' if len(tied) > 1 else 'has'} all {top_v.shape[0]} top values tied at "
                      f"{float(first[units.index(tied[0])]):.4g} (a saturated activation?): the patches shown are "
                      "some of the tied ones, not a ranking; a layer before the activation ranks them",
                      stacklevel=3)


def _field_boxes(pos: np.ndarray, rf: tuple, jump: tuple, start: tuple) -> np.ndarray:
    """The pixel window of unit (i, j): ``AxisField.pixels`` per axis, as (y0, x0, y1, x1)."""
    from cnnlab.analysis.receptive_field import AxisField

    fh, fw = AxisField(rf[0], jump[0], start[0]), AxisField(rf[1], jump[1], start[1])
    boxes = np.zeros(pos.shape[:2] + (4,), dtype=np.int64)
    for u in range(pos.shape[0]):
        for j in range(pos.shape[1]):
            r, c = fh.pixels(int(pos[u, j, 0])), fw.pixels(int(pos[u, j, 1]))
            boxes[u, j] = (r.start, c.start, r.stop, c.stop)
    return boxes


def _crop(images: np.ndarray, index: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    _, c, h, w = images.shape
    bh = int((boxes[..., 2] - boxes[..., 0]).max())
    bw = int((boxes[..., 3] - boxes[..., 1]).max())
    out = np.full(index.shape + (c, bh, bw), np.nan, dtype=np.float32)
    for u in range(index.shape[0]):
        for j in range(index.shape[1]):
            y0, x0, y1, x1 = boxes[u, j]
            cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
            if cy1 > cy0 and cx1 > cx0:
                out[u, j, :, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = images[index[u, j], :, cy0:cy1, cx0:cx1]
    return out


@torch.no_grad()
def penultimate_features(model: nn.Module, images: Tensor, *, batch_size: int = 256) -> np.ndarray:
    """The input of the last ``nn.Linear`` the forward calls (the classifier's features); for a net
    without one (NiN), the global average of ``forward_features``. (N, D) float32."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    seen: list[Tensor] = []
    handles = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach())) for m in linears]
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for s in range(0, images.shape[0], batch_size):
            seen.clear()
            x = images[s : s + batch_size].to(model_device(model))
            if linears:
                model(x)
                chunks.append(seen[-1].flatten(1).float().cpu())
            else:
                chunks.append(model.forward_features(x).float().mean((2, 3)).cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return torch.cat(chunks).numpy()


def embed_2d(features: np.ndarray, *, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``features`` (N, D) in 2-D: ``pca`` or ``tsne`` (scikit-learn; t-SNE after a 50-d PCA)."""
    from sklearn.decomposition import PCA

    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(features).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        reduced = features
        if features.shape[1] > 50 and features.shape[0] > 50:
            reduced = PCA(n_components=50, random_state=seed).fit_transform(features)
        perplexity = float(min(30.0, max(2.0, (features.shape[0] - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            reduced).astype(np.float32)  # fmt: skip
    raise ConfigError(f"embedding method must be 'pca' or 'tsne', got {method!r}")
