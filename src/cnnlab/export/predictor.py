"""``cnnlab.Predictor``: top-k classes of image files, through the fastest backend that is accurate here.

``backend="auto"`` measures the candidates on this machine and keeps the fastest whose top-1 answers
agree with eager fp32 on data the run did not select on:

* fp32 (NCHW and channels_last) and ONNX Runtime fp32 (when ``cnnlab[export]`` is installed) must
  agree on all but rounding ties (``FP32_AGREEMENT``);
* bf16 is a candidate only on a CPU with native bf16 (AVX512-BF16/AMX; elsewhere it is emulated and
  slower) and must agree on at least ``BF16_AGREEMENT`` of the check images.

The check images are the run's validation split when its data set has one, else the start of its
train split; never the test split. Without them (no run config, data files absent) bf16 is not
used, because its accuracy cannot be checked. ``torch.compile`` is not a candidate: it compiles for
minutes, its cache would be compiled code (cnnlab loads no code from files), and it was slower than
eager on these CPUs (benchmarks/inference.py).

The choice and the ONNX file are cached in the run folder under ``inference/``, named by the weights'
sha256. Beside the ONNX file, a manifest that cnnlab writes when it exports there records the weights'
sha256 and the ONNX file's size and sha256; a cached file is used only when it matches its manifest
*and* answers a probe batch as the PyTorch model with the loaded weights does (a manifest in the same
folder can be forged along with the file; the probe cannot be). Otherwise the model is exported afresh
to a temporary folder and the cache is left alone. The choice is re-measured when the machine (CPU,
threads, library versions) differs. Existing files are never overwritten.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.export.backends import BACKENDS, MAX_ONNX_BYTES, Backend, machine_info, make_backend
from cnnlab.export.bench import compare_outputs
from cnnlab.export.source import InferenceModel, load_model
from cnnlab.models.weights import sha256_hex
from cnnlab.safeio import read_json, read_regular

__all__ = ["Predictor", "Prediction", "BF16_AGREEMENT", "FP32_AGREEMENT", "is_segmentation", "write_masks",
           "source_task", "write_detections", "caption_images"]

BF16_AGREEMENT = 0.99  # bf16 may flip near-ties: at most 1 in 100 check images
FP32_AGREEMENT = 0.995  # fp32 paths differ only by summation order
FP32_TOLERANCE = 1e-4  # largest logit difference from eager fp32 that counts as rounding
CHECK_IMAGES = 256
CACHE_DIR = "inference"
ONNX_CACHE_FORMAT = "cnnlab-onnx-cache/1"  # <weights sha256[:16]>.onnx.json beside the .onnx it describes
PROBE_IMAGES = 4  # random inputs a cached ONNX file must answer as the PyTorch model does
PROBE_TOLERANCE = 1e-3  # relative to the largest logit: fp32 ONNX Runtime differs by ~1e-6
PREDICT_BACKENDS = ("auto", "eager", "channels_last", "bf16", "onnxruntime")


@dataclass(frozen=True)
class Prediction:
    file: str  # the image's path, or "<array>", "<tensor 3>", ... for images given in memory
    top: list[tuple[str, int, float]]  # (class name, class index, probability), most probable first
    notes: tuple[str, ...] = ()  # what was done to the image (inverted) or is unusual about it

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "top": [{"class": n, "index": i, "probability": p} for n, i, p in self.top],
                "notes": list(self.notes)}


def _machine_key() -> dict[str, Any]:
    m = machine_info()
    return {k: m[k] for k in ("cpu", "cpu_flags", "torch_threads", "torch", "onnxruntime")}


class Predictor:
    """Predict classes of images with a trained model (``Predictor.from_run("runs/...")``)."""

    def __init__(self, source: InferenceModel, *, backend: str = "auto", cache: bool = True, log=None) -> None:
        if backend not in PREDICT_BACKENDS:
            raise ConfigError(f"unknown backend {backend!r} (use {', '.join(PREDICT_BACKENDS)})")
        check_predictable(source)
        self.source = source
        self.preprocessing = source.preprocessing
        self._log = log or (lambda msg: None)
        self._tmp = None
        cache_dir = source.run_dir / CACHE_DIR if cache and source.run_dir and source.weights_sha256 else None
        self._cache = cache_dir
        self.choice: dict[str, Any] = {}
        self._measured: dict[str, Backend] = {}
        self.backend: Backend = self._choose(backend)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, *, backend: str = "auto", cache: bool = True, log=None) -> Predictor:
        return cls(load_model(run=run_dir), backend=backend, cache=cache, log=log)

    @classmethod
    def from_weights(cls, weights: str | os.PathLike, *, model: str | None = None, config: dict | None = None,
                     sha256: str | None = None, backend: str = "auto", log=None) -> Predictor:
        return cls(load_model(weights=weights, model=model, config=config, sha256=sha256), backend=backend, log=log)

    # --------------------------------------------------------------------------------- choosing

    def _onnx_path(self) -> Path:
        if self._cache is not None:
            try:
                self._cache.mkdir(exist_ok=True)
                return self._cache / f"{self.source.weights_sha256[:16]}.onnx"
            except OSError as err:
                self._log(f"cannot cache in {self._cache} ({err.strerror}); using a temporary folder")
                self._cache = None
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cnnlab-predict-")
        return Path(self._tmp.name) / f"{self.source.name}.onnx"

    def _manifest_path(self, onnx_path: Path) -> Path:
        return onnx_path.with_name(onnx_path.name + ".json")

    def _read_cached_onnx(self, path: Path) -> tuple[bytes | None, str | None]:
        """``(bytes, None)``: the cached ONNX file, matching the manifest cnnlab wrote beside it when it
        exported there (these weights' sha256, the file's size and sha256); ``(None, None)``: no cache
        yet; ``(None, why)``: a file that is not that (crafted, altered, a FIFO, an older cnnlab's)."""
        manifest = self._manifest_path(path)
        if not os.path.lexists(path) and not os.path.lexists(manifest):
            return None, None
        try:
            doc = read_json(manifest, what="ONNX cache manifest", error=ConfigError, max_bytes=1 << 20)
            if not isinstance(doc, dict) or doc.get("format") != ONNX_CACHE_FORMAT:
                return None, f"its manifest {manifest.name} is not a {ONNX_CACHE_FORMAT} manifest"
            size, digest = doc.get("onnx_size"), doc.get("onnx_sha256")
            if doc.get("weights_sha256") != self.source.weights_sha256:
                return None, f"its manifest {manifest.name} names other weights"
            if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_ONNX_BYTES:
                return None, f"its manifest {manifest.name} has no valid onnx_size"
            data = read_regular(path, what="cached ONNX file", error=ConfigError, max_bytes=size)
        except ConfigError as err:
            return None, str(err)
        if len(data) != size or sha256_hex(data) != digest:
            return None, f"its content does not match the sha256 in {manifest.name} (altered or replaced)"
        return data, None

    def _agrees(self, data: bytes) -> Backend | None:
        """The onnxruntime backend of ``data`` if its logits match the eager model's on a probe batch:
        the manifest binds the file to what cnnlab wrote, this binds it to these weights."""
        try:
            backend = make_backend("onnxruntime", self.source.model, preprocessing=self.preprocessing,
                                   onnx_path=Path("cached.onnx"), onnx_bytes=data)
            x = torch.randn(PROBE_IMAGES, *self.preprocessing.input_size, generator=torch.Generator().manual_seed(1))
            with torch.inference_mode():
                ref = self.source.model(x).float()
            out = backend.run(x)
        except Exception:  # noqa: BLE001 (a crafted graph can fail in many ways; it is then not used)
            return None
        if out.shape != ref.shape or not compare_outputs(out, ref)["max_abs_diff"] <= \
                PROBE_TOLERANCE * max(1.0, float(ref.abs().max())):
            return None
        return backend

    def _build(self, name: str) -> Backend:
        if name != "onnxruntime":
            return make_backend(name, self.source.model, preprocessing=self.preprocessing)
        path = self._onnx_path()
        if self._cache is not None:
            data, why = self._read_cached_onnx(path)
            if data is not None:
                backend = self._agrees(data)
                if backend is not None:
                    backend.files = [path]
                    return backend
                why = "its outputs differ from the model's on a probe batch"
            if why is not None:
                self._log(f"{path} is not this model's export ({why}); leaving it alone and exporting to a "
                          "temporary folder")
                self._cache = None
                path = self._onnx_path()
        from cnnlab.export.export import export_onnx

        export_onnx(self.source.model, path, preprocessing=self.preprocessing, dynamic_batch=True,
                    extra_metadata={"weights_sha256": self.source.weights_sha256 or ""})
        data = read_regular(path, what="ONNX file", error=ConfigError, max_bytes=MAX_ONNX_BYTES)
        if self._cache is not None:
            from cnnlab.models.weights import atomic_write

            doc = {"format": ONNX_CACHE_FORMAT, "weights_sha256": self.source.weights_sha256,
                   "onnx_size": len(data), "onnx_sha256": sha256_hex(data)}
            atomic_write(self._manifest_path(path), json.dumps(doc, indent=2).encode())
        return make_backend(name, self.source.model, preprocessing=self.preprocessing, onnx_path=path,
                            onnx_bytes=data)

    def _candidates(self) -> list[str]:
        from cnnlab.training.device import cpu_has_bf16

        names = ["eager", "channels_last"]
        if cpu_has_bf16():
            names.append("bf16")
        try:
            import onnx, onnxruntime, onnxscript  # noqa: F401,E401
            names.append("onnxruntime")
        except ImportError:
            self._log("onnxruntime not installed (pip install 'cnnlab[export]'): not a candidate")
        return names

    def _choice_file(self) -> Path | None:
        return self._cache / f"{self.source.weights_sha256[:16]}.choice.json" if self._cache else None

    def _read_choice(self) -> dict[str, Any] | None:
        path = self._choice_file()
        if path is None or not os.path.lexists(path):
            return None
        try:
            doc = read_json(path, what="backend choice", error=ConfigError, max_bytes=1 << 20)
        except ConfigError:
            return None
        if not isinstance(doc, dict):
            return None
        ok = doc.get("weights_sha256") == self.source.weights_sha256 and doc.get("machine") == _machine_key()
        return doc if ok and doc.get("backend") in BACKENDS else None

    def _choose(self, backend: str) -> Backend:
        if backend != "auto":
            self.choice = {"backend": backend, "reason": "asked for"}
            return self._build(backend)
        cached = self._read_choice()
        if cached is not None:
            self.choice = {**cached, "reason": f"cached in {self._choice_file()}"}
            return self._build(cached["backend"])
        self.choice = self._measure()
        path = self._choice_file()
        if path is not None and not path.exists():
            from cnnlab.atomic import atomic_write

            path.parent.mkdir(exist_ok=True)  # the run's inference/ (absent when no ONNX file was cached)
            atomic_write(path, json.dumps(self.choice, indent=2).encode())
        # The measured backend itself: building it again would export to the same temporary file.
        return self._measured.get(self.choice["backend"]) or self._build(self.choice["backend"])

    def _check_images(self) -> tuple[Tensor | None, str]:
        """Images to check agreement on: the run's validation split, else its train split; never test."""
        cfg = self.source.config
        if not cfg:
            return None, "no run config, so no data to check against"
        spec = cfg.get("spec") or {}
        from cnnlab.data import load_dataset
        from cnnlab.models.registry import model_info

        try:
            data = load_dataset(spec.get("data") or "mnist-5k", root=spec.get("data_root") or "data",
                                input_size=model_info(self.source.name).input_size, seed=int(spec.get("seed") or 0),
                                bad_files=spec.get("bad_files") or "strict",
                                **({"val_fraction": float(spec["val_fraction"])} if spec.get("val_fraction") else {}),
                                **(spec.get("data_options") or {}))
        except CnnlabError as err:
            return None, f"the run's data could not be loaded ({err})"
        val = getattr(data, "val", None)
        pair, split = (val, "validation") if val is not None and len(val) else (data.train, "train")
        x = pair.x[:CHECK_IMAGES].contiguous()
        if tuple(x.shape[1:]) != self.preprocessing.input_size:
            return None, f"the run's data is {tuple(x.shape[1:])}, the model takes {self.preprocessing.input_size}"
        return x, f"{len(x)} images of {data.name}'s {split} split"

    def _measure(self) -> dict[str, Any]:
        x, where = self._check_images()
        names = self._candidates()
        if x is None:
            names = [n for n in names if n != "bf16"]
            x = torch.randn(16, *self.preprocessing.input_size, generator=torch.Generator().manual_seed(0))
            where = f"{where}; bf16 not used (its accuracy cannot be checked); timed on 16 random inputs"
        self._log(f"choosing a backend among {', '.join(names)} (check: {where})")
        with torch.inference_mode():
            ref = self.source.model(x).float()
        built, report = [], {}
        for name in names:
            try:
                b = self._build(name)
                quality = compare_outputs(b.run(x), ref)
            except Exception as err:  # a candidate that fails (export, ORT session) is left out, with why
                if name == "eager":
                    raise
                report[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
                self._log(f"{name} left out: {report[name]['error']}")
                continue
            need = BF16_AGREEMENT if name == "bf16" else FP32_AGREEMENT
            # An fp32 path within rounding of eager can only flip exact ties (an untrained net has many).
            rounding = name != "bf16" and quality["max_abs_diff"] <= FP32_TOLERANCE
            report[name] = {**quality, "accurate": quality["top1_agreement"] >= need or rounding}
            if report[name]["accurate"]:
                built.append(b)
        xb = x[:16]
        times: dict[str, list[float]] = {b.name: [] for b in built}
        for r in range(3):  # interleaved rounds, as in cnnlab bench
            for b in built[r % len(built):] + built[:r % len(built)]:
                start = time.perf_counter()
                b.run(xb)
                times[b.name].append((time.perf_counter() - start) / len(xb))
        for b in built:
            report[b.name]["ms_per_image"] = 1000 * statistics.median(times[b.name])
        best = min(built, key=lambda b: report[b.name]["ms_per_image"])
        self._measured = {best.name: best}
        return {"backend": best.name, "weights_sha256": self.source.weights_sha256, "machine": _machine_key(),
                "check": where, "candidates": report,
                "reason": f"fastest accurate backend ({report[best.name]['ms_per_image']:.2f} ms/image at batch {len(xb)})"}

    # ------------------------------------------------------------------------------- predicting

    def logits(self, x: Tensor, *, batch_size: int = 64) -> Tensor:
        """fp32 logits of a normalised (N, C, H, W) batch through the chosen backend."""
        outs = [self.backend.run(x[i:i + batch_size].contiguous()).float() for i in range(0, len(x), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.preprocessing.num_classes)

    def predict(self, images: Any, *, top_k: int = 5, invert: bool | None = None) -> list[Prediction]:
        """Top ``top_k`` classes with probabilities for each image: a file path (any format PIL reads), a
        PIL image, a NumPy array or a tensor, or a batch or list of them (``Preprocessing.prepare``);
        one :class:`Prediction` per image, with notes (an inverted digit, a colour or unusual image)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
        x, labels = self.preprocessing.prepare(images, invert=invert)
        probs = torch.softmax(self.logits(x), dim=1)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        names = self.preprocessing.class_names
        return [Prediction(label, [(names[i], int(i), float(p)) for p, i in zip(v.tolist(), ix.tolist())], notes)
                for (label, notes), v, ix in zip(labels, values, indices)]

    def __repr__(self) -> str:
        return f"Predictor({self.source.name}, backend={self.backend.name!r})"



# ---------------------------------------------------------------------------------- segmentation


def source_task(source: InferenceModel) -> str:
    """What ``source`` was trained to do: its run's task, or (no run) the zoo's registered task; a model
    outside the zoo is a classifier, as the Predictor assumes."""
    task = (source.config or {}).get("task")
    if isinstance(task, dict) and isinstance(task.get("name"), str):
        return task["name"]
    from cnnlab.models.registry import model_info

    try:
        return model_info(source.name).task
    except Exception:  # noqa: BLE001
        return "classification"


def is_segmentation(source: InferenceModel) -> bool:
    """Whether ``source`` predicts per-pixel classes (:func:`source_task`)."""
    return source_task(source) == "segmentation"


# The tasks whose models `predict` answers; the others are refused with the command that fits them.
PREDICTABLE_TASKS = ("classification", "segmentation")
OTHER_COMMANDS = {"vae": "`cnnlab sample RUN` draws from it", "gan": "`cnnlab sample RUN` draws from it",
                  "reconstruction": "`cnnlab eval` measures its reconstructions",
                  "detection": "`cnnlab predict IMAGE --run RUN` draws its boxes",
                  "captioning": "`cnnlab predict IMAGE --run RUN` prints its captions"}


def check_predictable(source: InferenceModel) -> None:
    """ConfigError for a model that does not name classes of an image (a VAE, a GAN, an autoencoder)."""
    task = source_task(source)
    if task not in PREDICTABLE_TASKS:
        hint = OTHER_COMMANDS.get(task, "it has no class to predict")
        raise ConfigError(f"{source.name} was trained as a {task} model, not a classifier: predict names the "
                          f"classes of an image; {hint}")


def write_masks(source: InferenceModel, images: Sequence[str | os.PathLike], *, out_dir: str | os.PathLike,
                batch_size: int = 16) -> list[Path]:
    """For each image file, ``<out_dir>/<stem>.mask.png``: the predicted class of every pixel (at the
    model's input size) as a palette PNG whose pixel values are the class indices and whose colours are
    VOC's. Eager fp32 (the backend choice of :class:`Predictor` compares top-1 classes, not masks).
    Existing files are never overwritten: ConfigError naming the first one, before anything is written."""
    import numpy as np
    from PIL import Image

    from cnnlab.atomic import atomic_write
    from cnnlab.viz.segmentation import voc_palette

    out = Path(out_dir)
    targets = [out / f"{Path(p).stem}.mask.png" for p in images]
    clash = next((t for t in targets if t.exists()), None) or next(
        (t for i, t in enumerate(targets) if t in targets[:i]), None)
    if clash is not None:
        raise ConfigError(f"{clash}: exists or is named twice (image stems must differ); not overwritten")
    from cnnlab.data.readers import open_image

    for p in images:  # every header readable before the first mask is written
        open_image(Path(p))
    out.mkdir(parents=True, exist_ok=True)
    palette = voc_palette().flatten().tolist()
    for i in range(0, len(images), batch_size):  # a batch at a time: thousands of images never all in memory
        x = source.preprocessing.load_images([Path(p) for p in images[i:i + batch_size]])
        with torch.no_grad():
            masks = source.model(x).float().argmax(1)
        for target, mask in zip(targets[i:i + batch_size], masks):
            img = Image.fromarray(mask.numpy().astype(np.uint8), mode="P")
            img.putpalette(palette)
            with tempfile.SpooledTemporaryFile() as buf:
                img.save(buf, format="PNG")
                buf.seek(0)
                atomic_write(target, buf.read())
    return targets


# ---------------------------------------------------------------------------- detection, captions


def _pixels(source: InferenceModel, x: Tensor):
    """The model's normalised input back as uint8 pixels (N, H, W) or (N, H, W, 3)."""
    import numpy as np

    prep = source.preprocessing
    mean, std = torch.tensor(prep.mean).view(1, -1, 1, 1), torch.tensor(prep.std).view(1, -1, 1, 1)
    a = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return a[:, 0] if a.shape[1] == 1 else np.transpose(a, (0, 2, 3, 1))


def write_detections(source: InferenceModel, images: Sequence[str | os.PathLike], *, out_dir: str | os.PathLike,
                     invert: bool | None = None, batch_size: int = 16) -> list[dict[str, Any]]:
    """For each image file: the detector's boxes (pixels of the model's input), scores and class names,
    and ``<out_dir>/<stem>.boxes.png``, the input enlarged with the boxes drawn and labelled. Eager fp32.
    Existing files are never overwritten: ConfigError naming the first one, before anything is written."""
    from cnnlab.atomic import atomic_write
    from cnnlab.viz.detection import draw_boxes

    out = Path(out_dir)
    targets = [out / f"{Path(p).stem}.boxes.png" for p in images]
    clash = next((t for t in targets if t.exists()), None) or next(
        (t for i, t in enumerate(targets) if t in targets[:i]), None)
    if clash is not None:
        raise ConfigError(f"{clash}: exists or is named twice (image stems must differ); not overwritten")
    names = source.preprocessing.class_names
    results: list[dict[str, Any]] = []
    for i in range(0, len(images), batch_size):
        x, labels = source.preprocessing.prepare([str(p) for p in images[i:i + batch_size]], invert=invert)
        found = source.model.detect(x)
        for target, pixels, d, (file, notes) in zip(targets[i:i + batch_size], _pixels(source, x), found, labels):
            boxes, classes = d.boxes.tolist(), [names[int(k)] for k in d.labels]
            img = draw_boxes(pixels, boxes, classes, scores=d.scores.tolist())
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.SpooledTemporaryFile() as buf:
                img.save(buf, format="PNG")
                buf.seek(0)
                atomic_write(target, buf.read())
            results.append({"file": file, "picture": str(target), "notes": list(notes), "detections": [
                {"class": c, "score": float(s), "box": [round(v, 1) for v in b]}
                for b, c, s in zip(boxes, classes, d.scores.tolist())]})
    return results


def caption_images(source: InferenceModel, images: Sequence[str | os.PathLike], *, beam_size: int = 3,
                   invert: bool | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
    """For each image file: its greedy caption and its beam-search caption (``beam_size``). Eager fp32."""
    from cnnlab.data.canvas import decode_caption

    words = source.preprocessing.class_names
    results: list[dict[str, Any]] = []
    for i in range(0, len(images), batch_size):
        x, labels = source.preprocessing.prepare([str(p) for p in images[i:i + batch_size]], invert=invert)
        with torch.no_grad():
            greedy, beam = source.model(x), source.model.beam_search(x, beam_size=beam_size)
        for g, b, (file, notes) in zip(greedy, beam, labels):
            results.append({"file": file, "greedy": decode_caption(g, words), "beam": decode_caption(b, words),
                            "beam_size": beam_size, "notes": list(notes)})
    return results
