"""The run's images that excite a unit most (:func:`cnnlab.inspect.top_patches`), searched once per stage
and unit group and cached in the run folder.

The images are the run's validation split (else its train split; never the test split), at most
``max_images`` of them spread evenly over it. A group's answer (image index, position, value and
receptive-field box of each unit's top ``k``) is kept in memory and in
``RUN/explore-cache/<weights sha256[:16]>/<stage>-<first unit>-<last unit>.npz`` with what it was computed
from; a cached file is used only when that record matches, and a file that does not match is left alone.
The crops are cut again from the images for each request, so the cache stays a few kB per stage.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnnlab.errors import CnnlabError

__all__ = ["TopPatchCache", "TOP_K", "CACHE_FORMAT", "GROUP_BYTES"]

TOP_K = 9  # Zeiler & Fergus (2014) Fig. 2 show the top 9 patches of a unit
CACHE_FORMAT = "cnnlab-explore-top-patches/1"
GROUP_BYTES = 64 << 20  # top_patches cuts float crops for every unit it searches: units per pass so they fit
MAX_GROUP = 64  # units searched in one pass over the images
MAX_CACHE_FILE = 64 << 20


class TopPatchCache:
    """Top patches of the units of ``source``'s model, from its run's data."""

    def __init__(self, source: Any, *, cache_dir: Path | None, max_images: int = 1000, log=print) -> None:  # noqa: ANN001
        self.source = source
        self.cache_dir = Path(cache_dir) / (source.weights_sha256 or "random")[:16] if cache_dir else None
        self.max_images = max_images
        self._log = log
        self._images: Tensor | None = None
        self._labels: list[str] = []
        self._where = ""
        self._groups: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}

    def describe(self) -> dict[str, Any]:
        return {"images": len(self._images) if self._images is not None else self.max_images,
                "where": self._where or "the run's validation split (loaded on first use)",
                "cache": str(self.cache_dir) if self.cache_dir else None}

    def images(self) -> Tensor:
        """The searched images (N, C, H, W), normalised as the model's input; loaded on first use."""
        if self._images is not None:
            return self._images
        from cnnlab.data import load_dataset
        from cnnlab.explore.session import RequestError

        spec = (self.source.config or {}).get("spec") or {}
        prep = self.source.preprocessing
        try:
            data = load_dataset(spec.get("data") or "mnist-5k", root=spec.get("data_root") or "data",
                                input_size=prep.input_size, seed=int(spec.get("seed") or 0),
                                bad_files=spec.get("bad_files") or "strict",
                                **({"val_fraction": float(spec["val_fraction"])} if spec.get("val_fraction") else {}),
                                **(spec.get("data_options") or {}))
        except (CnnlabError, TypeError, ValueError) as err:
            raise RequestError(f"the run's data could not be loaded for top patches ({err})", 422) from None
        val = getattr(data, "val", None)
        pair, split = (val, "validation") if val is not None and len(val) else (data.train, "train")
        pick = torch.linspace(0, len(pair) - 1, min(self.max_images, len(pair))).round().long().unique()
        self._images = pair.x[pick].contiguous()
        self._labels = [str(data.class_names[int(y)]) for y in pair.y[pick]]
        self._where = f"{len(pick)} images of {data.name}'s {split} split"
        return self._images

    def sample(self, index: int) -> tuple[np.ndarray, str]:
        """Searched image ``index`` in pixels (C, H, W) in [0, 1], and its class name."""
        from cnnlab.explore.session import RequestError

        images = self.images()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
            raise RequestError(f"image {index!r} is out of range: {self._where} are numbered 0..{len(images) - 1}")
        prep = self.source.preprocessing
        mean, std = np.array(prep.mean).reshape(-1, 1, 1), np.array(prep.std).reshape(-1, 1, 1)
        return np.clip(images[index].float().numpy() * std + mean, 0, 1), self._labels[index]

    def _group(self, unit: int, channels: int, rf: tuple[float, float]) -> tuple[int, int]:
        c = self.source.preprocessing.input_size[0]
        per_unit = TOP_K * c * (int(rf[0]) + 2) * (int(rf[1]) + 2) * 4
        size = max(1, min(MAX_GROUP, GROUP_BYTES // per_unit))
        first = unit // size * size
        return first, min(channels, first + size)

    def _path(self, layer: str, first: int, stop: int) -> Path | None:
        if self.cache_dir is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", layer)
        return self.cache_dir / f"{safe}-{first}-{stop - 1}.npz"

    def _record(self, layer: str, first: int, stop: int) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "weights_sha256": self.source.weights_sha256, "layer": layer,
                "units": [first, stop], "k": TOP_K, "images": self._where}

    def _read(self, path: Path, record: dict[str, Any]) -> dict[str, np.ndarray] | None:
        from cnnlab.safeio import read_regular

        try:
            raw = read_regular(path, what="top-patch cache", error=CnnlabError, max_bytes=MAX_CACHE_FILE)
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("index", "position", "value", "boxes", "record")}
        except (CnnlabError, OSError, ValueError, KeyError) as err:
            self._log(f"{path}: not used ({err})")
            return None
        units = record["units"][1] - record["units"][0]
        ok = str(arrays.pop("record")) == json.dumps(record, sort_keys=True) and arrays["index"].shape == (units, TOP_K) \
            and arrays["boxes"].shape == (units, TOP_K, 4) and int(arrays["index"].max(initial=0)) < len(self._images)
        if not ok:
            self._log(f"{path}: made from other weights, data or settings; not used, left as it is")
        return arrays if ok else None

    def _search(self, model: nn.Module, layer: str, first: int, stop: int) -> dict[str, np.ndarray]:
        from cnnlab import atomic
        from cnnlab.inspect import top_patches

        key = (layer, first, stop)
        if key in self._groups:
            return self._groups[key]
        images = self.images()
        record = self._record(layer, first, stop)
        path = self._path(layer, first, stop)
        arrays = self._read(path, record) if path is not None and path.exists() else None
        if arrays is None:
            tp = top_patches(model, images, layer=layer, units=list(range(first, stop)), k=min(TOP_K, len(images)))
            arrays = {"index": tp.index, "position": tp.position, "value": tp.value, "boxes": tp.boxes}
            if path is not None and not path.exists() and arrays["index"].shape[1] == TOP_K:
                buf = io.BytesIO()
                np.savez(buf, **arrays, record=np.array(json.dumps(record, sort_keys=True)))
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic.atomic_write(path, buf.getvalue())
                except OSError as err:
                    self._log(f"cannot cache top patches in {path.parent} ({err.strerror or err})")
        self._groups[key] = arrays
        return arrays

    def unit(self, model: nn.Module, layer: str, unit: int, *, channels: int) -> dict[str, Any]:
        """The top patches of ``unit``: crops in pixels (k, C, h, w) in [0, 1], black outside the image,
        with the image index, position, activation and receptive-field box of each."""
        from cnnlab.explore.session import pack
        from cnnlab.inspect import layer_field

        rf, _, _ = layer_field(model, layer, self.source.preprocessing.input_size)
        first, stop = self._group(unit, channels, rf)
        a = self._search(model, layer, first, stop)
        u = unit - first
        crops = self._cut(a["index"][u], a["boxes"][u])
        return {"layer": layer, "unit": unit, "crops": pack(crops, lo=0.0, hi=1.0), "rf": [float(v) for v in rf],
                "index": a["index"][u].tolist(), "value": [float(v) for v in a["value"][u]],
                "position": a["position"][u].tolist(), "boxes": a["boxes"][u].tolist(), "where": self._where}

    def _cut(self, index: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        prep = self.source.preprocessing
        images = self.images()
        _, c, h, w = images.shape
        bh, bw = int((boxes[:, 2] - boxes[:, 0]).max()), int((boxes[:, 3] - boxes[:, 1]).max())
        out = np.zeros((len(index), c, bh, bw), np.float32)
        mean, std = np.array(prep.mean).reshape(-1, 1, 1), np.array(prep.std).reshape(-1, 1, 1)
        for j, (i, (y0, x0, y1, x1)) in enumerate(zip(index.tolist(), boxes.tolist())):
            cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
            if cy1 > cy0 and cx1 > cx0:
                pixels = images[i, :, cy0:cy1, cx0:cx1].float().numpy() * std + mean
                out[j, :, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = np.clip(pixels, 0, 1)
        return out
