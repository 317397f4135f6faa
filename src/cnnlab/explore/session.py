"""One model behind the explorer page: what it predicts for an image, what each stage makes of it, what one
unit sees, and why it chose a class; every answer a JSON-ready dict of small arrays.

Images reach the model through the run's :class:`~cnnlab.export.preprocess.Preprocessing` (the steps of
``cnnlab predict``), so the page's classes are ``Predictor.predict``'s on the same pixels. Arrays travel
as ``{"shape", "lo", "hi", "data"}``: uint8 levels in base64, level 0 being ``lo`` and 255 ``hi``.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError, did_you_mean
from cnnlab.export.source import InferenceModel

__all__ = ["Explorer", "Stage", "RequestError", "ATTRIBUTIONS", "MAX_MAPS", "read_image", "pack", "load_explorers"]

# The page's "why" methods: CAM and Grad-CAM, one gradient method, and occlusion (inspect.attribution's names).
ATTRIBUTIONS = ("cam", "gradcam", "saliency", "occlusion")
MAX_MAPS = 64  # feature maps sent per stage (ResNet-50's layer1 has 256 of 56x56); any unit can still be picked
MAX_FILTER_TILES = 64  # input channels of a kernel shown, the largest first
MAX_TOP_K = 100
OCCLUSION_FINE_SIDE = 64  # inputs up to this side are occluded with squares of 1/8 of it, larger ones 1/4


class RequestError(ConfigError):
    """A request the explorer cannot answer: ``status`` 400 (bad input), 404, 413 (too large) or 422 (the
    model cannot do what was asked, e.g. CAM without a global-average-pooling head)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TooManyPixels(RequestError):
    """An upload over the pixel limit (``cnnlab.limits.MAX_IMAGE_PIXELS``): too large, 413."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 413)


@dataclass(frozen=True)
class Stage:
    """A ``feature_info`` stage: its output (C, H, W) for the model's input, the analyzer's receptive field
    per axis (rf, jump, start; None when it has none), and the convolution whose kernels make its units."""

    name: str
    shape: tuple[int, int, int]
    field: tuple[tuple, tuple, tuple] | None
    conv: str | None

    def to_dict(self) -> dict[str, Any]:
        f = self.field
        return {"name": self.name, "shape": list(self.shape), "conv": self.conv,
                "field": None if f is None else {"rf": list(f[0]), "jump": list(f[1]), "start": list(f[2])}}


def pack(a: np.ndarray | Tensor, *, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """``a`` as uint8 levels between ``lo`` and ``hi`` (default: its range, with 0 inside it), base64."""
    a = np.asarray(a.detach().float().cpu() if isinstance(a, Tensor) else a, dtype=np.float32)
    finite = a[np.isfinite(a)]
    lo = float(min(0.0, finite.min())) if lo is None and finite.size else float(lo or 0.0)
    hi = float(max(0.0, finite.max())) if hi is None and finite.size else float(hi if hi is not None else 1.0)
    span = hi - lo if hi > lo else 1.0
    levels = np.clip(np.round((np.nan_to_num(a, nan=lo) - lo) / span * 255.0), 0, 255).astype(np.uint8)
    return {"shape": list(a.shape), "lo": lo, "hi": hi, "data": base64.b64encode(levels.tobytes()).decode("ascii")}


def read_image(value: Any, *, max_bytes: int, max_side: int) -> Any:
    """The PIL image of a request's ``image``: a data URL or base64 of any file PIL reads, at most
    ``max_bytes`` and ``max_side`` pixels a side; RequestError naming what is wrong."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, str) or not value:
        raise RequestError("\"image\" must be a data URL or base64 text of an image file")
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header:
            raise RequestError("\"image\": a data URL must be base64 (data:image/png;base64,...)")
    if len(value) > (max_bytes + 2) // 3 * 4 + 4:
        raise RequestError(f"the image is larger than {max_bytes >> 20} MiB", 413)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("\"image\" is not valid base64") from None
    if not raw:
        raise RequestError("the image is empty (0 bytes)")
    from cnnlab.safeio import open_pil_image

    try:
        with open_pil_image(io.BytesIO(raw), name="(the upload)", error=TooManyPixels) as opened:
            if max(opened.size) > max_side:
                raise RequestError(f"the image is {opened.size[0]}x{opened.size[1]} pixels; at most {max_side} "
                                   "a side", 413)
            try:
                return opened.copy()  # decoded here, while the upload is open
            except (OSError, SyntaxError, ValueError) as err:
                raise RequestError(f"the upload is a truncated or corrupt image ({type(err).__name__}: {err})") from None
    except RequestError:
        raise
    except UnidentifiedImageError:
        raise RequestError("the upload is not an image (PIL cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise RequestError(f"the upload is not a readable image ({type(err).__name__}: {err})") from None


def _kernels(module: nn.Module) -> np.ndarray | None:
    """The dense kernels (out, in, kh, kw) of a convolution: an ``nn.Conv2d``, or one that stores a kernel
    per connection (``weight``: connections x kh x kw, with ``out_idx``/``in_idx``: LeNet-5's C3); None
    for any other module."""
    if isinstance(module, nn.Conv2d):
        return module.weight.detach().float().cpu().numpy()
    w, out_idx, in_idx = (getattr(module, a, None) for a in ("weight", "out_idx", "in_idx"))
    if not all(isinstance(t, Tensor) for t in (w, out_idx, in_idx)) or w.ndim != 3 or len(out_idx) != len(w):
        return None
    dense = np.zeros((int(module.out_channels), int(module.in_channels), *w.shape[1:]), np.float32)
    dense[out_idx.cpu().numpy(), in_idx.cpu().numpy()] = w.detach().float().cpu().numpy()
    return dense


def _last_conv(module: nn.Module, channels: int) -> str | None:
    """The name (inside ``module``) of its last convolution with ``channels`` outputs; "" for the module itself."""
    names = [n for n, m in module.named_modules()
             if _kernels(m) is not None and getattr(m, "out_channels", None) == channels]
    return names[-1] if names else None


# Layers that act on each channel alone: a stage ending in them (VGG's pooling, AlexNet's LRN) has
# the units of the convolution before them.
_PER_CHANNEL = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity,
                nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d)


def _conv_before(model: nn.Module, name: str, channels: int) -> str | None:
    """The convolution whose outputs reach stage ``name`` through per-channel layers only (module order),
    with ``channels`` outputs; None when something else comes between (a concatenation, a linear map)."""
    modules = list(model.named_modules())
    end = max(i for i, (n, _) in enumerate(modules) if n == name or n.startswith(name + "."))  # its last part
    leaves = [(n, m) for n, m in modules[:end + 1] if not list(m.children())]
    for n, m in reversed(leaves):
        if _kernels(m) is not None:
            return n if getattr(m, "out_channels", None) == channels else None
        if not isinstance(m, _PER_CHANNEL):
            return None
    return None


class Explorer:
    """A model ready for the page: ``predict``, ``unit``, ``patches`` and ``attribute`` answer its requests.

    One request computes at a time (``lock``): the stages are read by forward hooks on the shared model.
    """

    def __init__(self, source: InferenceModel, *, label: str | None = None, patches: Any = None) -> None:
        self.source = source
        self.model = source.model.eval()
        self.prep = source.preprocessing
        self.label = label or source.name
        self.patches = patches  # a TopPatchCache, or None (no data to search)
        self.lock = threading.Lock()
        self.stages = self._find_stages()
        self.methods = self._methods()

    # ------------------------------------------------------------------------------ what it is

    def _find_stages(self) -> list[Stage]:
        from cnnlab.inspect import capture, layer_field, resolve_layer, stage_names

        try:
            names = stage_names(self.model)
        except ConfigError:  # a net without feature_info: its convolutions are its stages
            names = [n for n, m in self.model.named_modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad(), capture(self.model, names) as store:
            self.model(torch.zeros(1, *self.prep.input_size))
        stages = []
        for name in names:
            out = store.get(name)
            if out is None or out.ndim != 4:
                continue  # a stage that did not run, or gives vectors (no maps to show)
            try:
                field = layer_field(self.model, name, self.prep.input_size)
            except ConfigError:
                field = None
            conv = _last_conv(resolve_layer(self.model, name), int(out.shape[1]))
            conv = _conv_before(self.model, name, int(out.shape[1])) if conv is None else \
                (f"{name}.{conv}" if conv else name)
            stages.append(Stage(name, tuple(int(v) for v in out.shape[1:]), field, conv))
        return stages

    def _methods(self) -> dict[str, str | None]:
        """Each attribution method with why it is unavailable for this model (None: available)."""
        from cnnlab.inspect import cam_head

        out: dict[str, str | None] = dict.fromkeys(ATTRIBUTIONS)
        try:
            cam_head(self.model, self.prep.input_size)
        except ConfigError as err:
            out["cam"] = str(err)
        if not self.stages:
            out["gradcam"] = "the model has no stage with feature maps"
        return out

    def steps(self) -> list[str]:
        """The preprocessing, in words, as :meth:`Preprocessing.prepare` does it."""
        p = self.prep
        c, h, w = p.input_size
        rh, rw = p.resize_to or (h - 2 * p.pad, w - 2 * p.pad)
        out = ["transparent parts filled with a background that contrasts with the ink",
               f"converted to {'grey (ITU-R 601 luma)' if c == 1 else 'RGB'}"]
        if p.crop_fraction is not None:
            out.append(f"the centre {p.crop_fraction:.3g} of the shorter side kept, with the input's aspect")
        out.append(f"resized {'bicubically' if p.interpolation == 'bicubic' else 'bilinearly'} (antialiased) "
                   f"to {rw}x{rh}")
        if p.pad:
            out.append(f"zero-padded by {p.pad} pixels on each side to {w}x{h}")
        if c == 1 and p.mean[0] < 0.5 and not p.source.startswith("defaults"):
            out.append("inverted when its border is light (the training images are light on dark)")
        mean, std = ", ".join(f"{m:.4g}" for m in p.mean), ", ".join(f"{s:.4g}" for s in p.std)
        out.append(f"normalised: (pixel / 255 - mean) / std with mean {mean}, std {std}")
        return out

    def info(self) -> dict[str, Any]:
        p = self.prep
        dark = p.input_size[0] == 1 and p.mean[0] < 0.5
        return {"label": self.label, "model": self.source.name, "input_size": list(p.input_size),
                "classes": list(p.class_names), "stages": [s.to_dict() for s in self.stages],
                "methods": self.methods, "steps": self.steps(), "source": p.source,
                "canvas": {"ink": "#ffffff" if dark else "#000000", "paper": "#000000" if dark else "#ffffff",
                           "digit_box": p.pad > 0},
                "patches": None if self.patches is None else self.patches.describe(),
                "weights": str(self.source.weights) if self.source.weights else None}

    def stage(self, name: Any) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        names = [s.name for s in self.stages]
        raise RequestError(f"unknown layer {name!r}{did_you_mean(str(name), names)} (stages: {', '.join(names)})")

    def check_unit(self, stage: Stage, unit: Any) -> int:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < stage.shape[0]:
            raise RequestError(f"unit {unit!r} is out of range: {stage.name} has units 0..{stage.shape[0] - 1}")
        return unit

    def check_class(self, target: Any) -> int:
        n = self.prep.num_classes
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < n:
            raise RequestError(f"class {target!r} is out of range: the model has classes 0..{n - 1}")
        return target

    # ------------------------------------------------------------------------------ answers

    def prepare(self, image: Any) -> tuple[Tensor, list[str]]:
        """The model's (1, C, H, W) input for a PIL image, and the notes about it (an inverted digit)."""
        try:
            x, labels = self.prep.prepare(image)
        except ConfigError as err:
            raise RequestError(f"cannot prepare the image: {err}") from None
        return x, list(labels[0][1])

    def display(self, x: Tensor) -> np.ndarray:
        """The model's input (1, C, H, W) back in pixels in [0, 1] (C, H, W): what the network sees."""
        mean = torch.tensor(self.prep.mean).view(-1, 1, 1)
        std = torch.tensor(self.prep.std).view(-1, 1, 1)
        return (x[0].cpu() * std + mean).clamp(0, 1).numpy()

    def predict(self, image: Any, *, top_k: int = 5, maps: bool = True) -> dict[str, Any]:
        """Top ``top_k`` classes (softmax of the logits, as ``Predictor.predict``), the model's input, and
        with ``maps`` each stage's first :data:`MAX_MAPS` maps, scaled together per stage."""
        from cnnlab.inspect import capture

        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise RequestError(f"top_k must be an integer in 1..{MAX_TOP_K}, got {top_k!r}")
        x, notes = self.prepare(image)
        names = [s.name for s in self.stages] if maps else []
        with self.lock, torch.no_grad(), capture(self.model, names) as store:
            probs = torch.softmax(self.model(x).float(), dim=1)[0]
            values, indices = probs.topk(min(top_k, probs.numel()))
            stages = [{"name": n, "maps": pack(store[n][0, :MAX_MAPS])} for n in names if n in store]
        top = [{"class": self.prep.class_names[i], "index": int(i), "probability": float(p)}
               for p, i in zip(values.tolist(), indices.tolist())]
        return {"top": top, "input": pack(self.display(x), lo=0.0, hi=1.0), "notes": notes, "stages": stages}

    def unit(self, image: Any, layer: Any, unit: Any) -> dict[str, Any]:
        """Unit ``unit`` of stage ``layer`` on the image: its map, its strongest position and that
        position's receptive field (input pixels y0, x0, y1, x1; y1/x1 exclusive, not clipped), its filter."""
        from cnnlab.analysis.receptive_field import AxisField
        from cnnlab.inspect import capture

        stage = self.stage(layer)
        unit = self.check_unit(stage, unit)
        x, _ = self.prepare(image)
        with self.lock, torch.no_grad(), capture(self.model, [stage.name]) as store:
            self.model(x)
            a = store[stage.name][0, unit].float().cpu()
        flat = int(a.argmax())
        row, col = divmod(flat, a.shape[1])
        box = None
        if stage.field is not None:
            (rh, rw), (jh, jw), (sh, sw) = stage.field
            r, c = AxisField(rh, jh, sh).pixels(row), AxisField(rw, jw, sw).pixels(col)
            box = [r.start, c.start, r.stop, c.stop]
        return {"layer": stage.name, "unit": unit, "map": pack(a), "max": {"row": row, "col": col,
                "value": float(a.view(-1)[flat])}, "box": box, "filter": self.filter(stage, unit)}  # fmt: skip

    def filter(self, stage: Stage, unit: int) -> dict[str, Any] | None:
        """The kernel (in, kh, kw) that makes ``unit``: in colour for an RGB image's first convolution,
        else its :data:`MAX_FILTER_TILES` connected input channels of largest L1 norm; None without a
        convolution."""
        from cnnlab.inspect import resolve_layer

        if stage.conv is None:
            return None
        module = resolve_layer(self.model, stage.conv)
        w = _kernels(module)[unit]  # in x kh x kw
        m = float(np.abs(w).max()) or 1.0
        rgb = w.shape[0] == 3 == self.prep.input_size[0] and stage.conv == self._first_conv()
        norms = np.abs(w).sum((1, 2))
        # A dense convolution reads every input channel (a weight may be 0); a partial one only its table's.
        reads = norms > 0 if not isinstance(module, nn.Conv2d) and norms.any() else np.ones(len(w), bool)
        order = np.arange(w.shape[0]) if rgb else np.argsort(-norms, kind="stable")
        if not rgb:
            order = order[reads[order]][:MAX_FILTER_TILES]
        return {"conv": stage.conv, "shape": [int(v) for v in w.shape], "rgb": bool(rgb),
                "connected": int(reads.sum()), "channels": [int(i) for i in order],
                "tiles": pack(w[order], lo=-m, hi=m)}

    def _first_conv(self) -> str | None:
        from cnnlab.inspect.layers import conv_layers

        names = conv_layers(self.model)
        return names[0] if names else None

    def top_patches(self, layer: Any, unit: Any) -> dict[str, Any]:
        """The run's images whose patches excite ``unit`` most (:class:`~cnnlab.explore.TopPatchCache`)."""
        stage = self.stage(layer)
        unit = self.check_unit(stage, unit)
        if self.patches is None:
            raise RequestError("no data to search for top patches: the model has no run whose data is here", 422)
        if stage.field is None:
            raise RequestError(f"{stage.name} has no spatial receptive field to cut patches with", 422)
        with self.lock:
            return self.patches.unit(self.model, stage.name, unit, channels=stage.shape[0])

    def sample(self, index: Any) -> dict[str, Any]:
        """Image ``index`` of the searched data (the numbers of the top patches) as a PNG data URL at the
        size the preprocessing resizes to (LeNet's padding taken off again), with its class."""
        from PIL import Image

        if self.patches is None:
            raise RequestError("no data to pick from: the model has no run whose data is here", 422)
        with self.lock:
            pixels, label = self.patches.sample(index)
        p = self.prep
        if p.pad:
            pixels = pixels[:, p.pad:-p.pad, p.pad:-p.pad]
        rgb = np.round(pixels * 255).astype(np.uint8)
        img = Image.fromarray(rgb[0] if rgb.shape[0] == 1 else rgb.transpose(1, 2, 0))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return {"index": index, "label": label, "where": self.patches.describe()["where"],
                "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")}

    def attribute(self, image: Any, target: Any, method: Any) -> dict[str, Any]:
        """``method``'s map (H, W) of the model's input for class ``target`` (:func:`cnnlab.inspect.attribute`)."""
        import warnings

        from cnnlab.inspect import attribute

        if method not in self.methods:
            raise RequestError(f"unknown method {method!r}{did_you_mean(str(method), list(ATTRIBUTIONS))} "
                               f"(methods: {', '.join(ATTRIBUTIONS)})")
        if self.methods[method]:
            raise RequestError(f"{method}: {self.methods[method]}", 422)
        target = self.check_class(target)
        x, _ = self.prepare(image)
        # Occlusion runs a forward pass per position of its square: a quarter of the side on large inputs
        # (49 passes at 224x224) instead of the default eighth (225), so that it answers in seconds.
        h = self.prep.input_size[1]
        window = max(2, round(h / 4)) if method == "occlusion" and h > OCCLUSION_FINE_SIDE else None
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum's notes on hooks: nothing the page's user can act on
            m = attribute(self.model, x, torch.tensor([target]), method=method, window=window)[0]
        return {"method": method, "class": target, "map": pack(m)}


def _task(source: InferenceModel) -> str:
    """What the model was trained for: its run's task, else the zoo's."""
    from cnnlab.models.registry import model_info

    task = (source.config or {}).get("task")
    if isinstance(task, dict) and task.get("name"):
        return str(task["name"])
    return model_info(source.name).task


def load_explorers(*, runs: list[str] | None = None, model: str | None = None, weights: str | None = None,
                   cache: bool = True, patch_images: int = 1000, log=print) -> list[Explorer]:  # noqa: ANN001
    """Explorers for each run folder of ``runs`` (one or two), or for ``model`` with or without ``weights``.

    A run's data (its validation split, else its train split) is searched for top patches, cached in
    ``RUN/explore-cache/`` unless ``cache`` is False; a weights file beside a run's config.json uses that
    run's data without writing anything."""
    from cnnlab.explore.patches import TopPatchCache
    from cnnlab.export.source import load_model
    from cnnlab.training.rundir import config_for_weights

    sources: list[tuple[InferenceModel, Path | None]] = []
    if runs:
        if model or weights:
            raise ConfigError("give --run, or --model with --weights, not both")
        sources = [(load_model(run=r), Path(r)) for r in runs]
    else:
        from cnnlab.models.pretrained import is_weights_name

        config = config_for_weights(weights) if weights and not is_weights_name(weights) else None
        sources = [(load_model(model=model, weights=weights, config=config), None)]
    explorers = []
    for source, run in sources:
        task = _task(source)
        if task != "classification":
            raise ConfigError(f"{source.name} is a {task} model; cnnlab explore shows classifiers (their classes, "
                              "stages and attributions)")
        label = f"{source.name} ({run.name})" if run is not None else f"{source.name} ({Path(weights).name})" \
            if weights else f"{source.name} (untrained)"
        cache_dir = run / "explore-cache" if run is not None and cache else None
        patches = TopPatchCache(source, cache_dir=cache_dir, max_images=patch_images, log=log) \
            if source.config else None
        explorers.append(Explorer(source, label=label, patches=patches))
    return explorers
