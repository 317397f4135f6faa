"""Export a model to ONNX or to a ``torch.export`` program (``.pt2``), preprocessing in its metadata.

* ONNX: PyTorch's exporter (``torch.onnx.export(..., dynamo=True)``, onnxscript). The preprocessing
  goes into the model's ``metadata_props``: ``cnnlab.preprocessing`` (the whole record as JSON) and
  ``input_size``, ``mean``, ``std``, ``class_names`` for other tools. The batch dimension is dynamic
  unless ``dynamic_batch=False``.
* ``.pt2``: ``torch.export.export`` saved with ``torch.export.save``; the preprocessing is the extra
  file ``cnnlab_preprocessing.json``.

Loading a ``.pt2`` file safely. ``torch.export.load`` is documented as unsafe for untrusted files: it
unpickles, evaluates shape expressions with ``sympy.sympify``, runs ``guards_code``, turns names into
Python source and calls operators looked up by name. :func:`load_pt2` hands it a file only after
:mod:`cnnlab.export.pt2_safety` has checked every field of the archive against torch's schema (the
module docstring there lists what is refused, and why).

Files are written beside their destination under a temporary name and linked into place, so an
existing file is never overwritten (and a killed export leaves no half-written model).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.atomic import write_temp
from cnnlab.errors import ConfigError, WeightsError
from cnnlab.export.preprocess import Preprocessing

__all__ = ["FORMATS", "require", "export_onnx", "export_pt2", "export_model", "load_pt2", "read_onnx_metadata",
           "example_input", "publish"]

FORMATS = ("onnx", "pt2")
META_KEY = "cnnlab.preprocessing"
PT2_EXTRA = "cnnlab_preprocessing.json"
EXPORT_EXTRA = "cnnlab[export]"
MAX_BATCH = 4096  # upper bound of the dynamic batch dimension (torch.export needs one to reason about shapes)


def require(*modules: str) -> list[Any]:
    """Import the optional packages ``modules``; one clear line naming the extra when one is missing."""
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError:
            raise ConfigError(f"this needs the optional package {name!r}: pip install '{EXPORT_EXTRA}' "
                              "(onnx, onnxscript, onnxruntime)") from None
    return out


def example_input(prep: Preprocessing, batch: int = 2) -> torch.Tensor:
    # batch 2, not 1: torch.export specialises a dimension whose example size is 1.
    return torch.randn(batch, *prep.input_size, generator=torch.Generator().manual_seed(0))


def publish(tmp: Path, path: Path) -> None:
    """Put the finished temporary file ``tmp`` at ``path``, never replacing an existing file."""
    try:
        os.link(tmp, path)  # fails if ``path`` exists: no check-then-write race
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path} exists; cnnlab does not overwrite it (choose another --out)") from None
    except OSError:  # a filesystem without hard links
        if path.exists():
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"{path} exists; cnnlab does not overwrite it (choose another --out)") from None
        os.replace(tmp, path)
        return
    tmp.unlink(missing_ok=True)


def _temp_beside(path: Path) -> Path:
    from cnnlab.models.weights import TMP_PREFIX

    if path.exists():
        raise ConfigError(f"{path} exists; cnnlab does not overwrite it (choose another --out)")
    if not path.parent.is_dir():
        raise ConfigError(f"--out {path}: the folder {path.parent} does not exist")
    return path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(4)}")


@contextlib.contextmanager
def _quiet():
    # The exporters print progress ("[torch.onnx] Obtain model graph ...") on stdout and log their
    # failures; the user gets one line from _export_error instead.
    loggers = [logging.getLogger(n) for n in ("torch.export", "torch.onnx", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_runs(model: nn.Module, example: torch.Tensor, name: str) -> None:
    try:
        with torch.no_grad():
            model(example)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        size = "x".join(map(str, example.shape[1:]))
        raise ConfigError(f"{name} does not run on a {size} input ({type(err).__name__}: {first[:200]}); "
                          "check --input") from None


def _dynamic_shapes(dynamic_batch: bool):
    return ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None


def _export_error(model_name: str, fmt: str, err: Exception) -> ConfigError:
    first = re.sub(r"\x1b\[[0-9;]*m", "", (str(err).strip().splitlines() or [type(err).__name__])[0])
    return ConfigError(f"{model_name} cannot be exported to {fmt}: {type(err).__name__}: {first[:300]}")


def export_onnx(model: nn.Module, path: str | os.PathLike, *, preprocessing: Preprocessing,
                dynamic_batch: bool = True, opset: int | None = None,
                extra_metadata: dict[str, str] | None = None) -> Path:
    """Export ``model`` (in eval mode) to ONNX at ``path`` with ``preprocessing`` (and ``extra_metadata``)
    in its metadata."""
    onnx, _ = require("onnx", "onnxscript")
    path = Path(path)
    tmp = _temp_beside(path)
    model = model.eval()
    example = example_input(preprocessing, 2 if dynamic_batch else 1)
    _check_runs(model, example, preprocessing.model)
    kwargs = {"opset_version": opset} if opset else {}
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model, (example,), dynamo=True,
                                        dynamic_shapes=_dynamic_shapes(dynamic_batch), input_names=["input"],
                                        output_names=["logits"], verbose=False, **kwargs)
    except Exception as err:  # the exporter raises many types; the user gets one line naming the model
        raise _export_error(preprocessing.model, "ONNX", err) from err
    proto = program.model_proto
    props = {META_KEY: preprocessing.to_json(), "input_size": json.dumps(list(preprocessing.input_size)),
             "mean": json.dumps(list(preprocessing.mean)), "std": json.dumps(list(preprocessing.std)),
             "class_names": json.dumps(list(preprocessing.class_names)), "producer": "cnnlab",
             **(extra_metadata or {})}
    onnx.helper.set_model_props(proto, props)
    try:
        try:
            onnx.save_model(proto, str(tmp))
        except OSError as err:  # name the file the user asked for, not the temporary
            raise OSError(err.errno, err.strerror, str(path)) from None
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_pt2(model: nn.Module, path: str | os.PathLike, *, preprocessing: Preprocessing,
               dynamic_batch: bool = True) -> Path:
    """Export ``model`` with ``torch.export`` to ``path`` (``.pt2``) with the preprocessing as an extra file."""
    path = Path(path)
    _temp_beside(path)  # an existing --out or a missing folder is refused before the work
    example = example_input(preprocessing, 2 if dynamic_batch else 1)
    _check_runs(model.eval(), example, preprocessing.model)
    try:
        with _quiet(), torch.no_grad():
            program = torch.export.export(model.eval(), (example,), dynamic_shapes=_dynamic_shapes(dynamic_batch))
    except Exception as err:
        raise _export_error(preprocessing.model, "torch.export", err) from err
    # Serialised in memory first: torch's zip writer aborts the process (C++ std::terminate, exit 134)
    # when a write fails (a full disk); Python's write of the finished bytes raises an OSError instead,
    # and write_temp removes its partial file.
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={PT2_EXTRA: preprocessing.to_json()})
    try:
        tmp = write_temp(path.parent, path.name, buffer.getbuffer())
    except OSError as err:  # name the file the user asked for, not the temporary
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_model(model: nn.Module, path: str | os.PathLike, *, format: str, preprocessing: Preprocessing,
                 dynamic_batch: bool = True) -> Path:
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r} (use {', '.join(FORMATS)})")
    fn = export_onnx if format == "onnx" else export_pt2
    return fn(model, path, preprocessing=preprocessing, dynamic_batch=dynamic_batch)


def read_onnx_metadata(path: str | os.PathLike) -> Preprocessing:
    """The preprocessing stored in an ONNX file by :func:`export_onnx`."""
    from cnnlab.export.backends import MAX_ONNX_BYTES
    from cnnlab.safeio import parse_json, read_regular

    (onnx,) = require("onnx")
    data = read_regular(path, what="ONNX file", error=WeightsError, max_bytes=MAX_ONNX_BYTES)  # no FIFO waits
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as err:
        raise WeightsError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise WeightsError(f"{path}: no cnnlab preprocessing in its metadata (not exported by cnnlab)")
    doc = parse_json(props[META_KEY], where=f"{path}: metadata {META_KEY}", error=WeightsError)
    if not isinstance(doc, dict):
        raise WeightsError(f"{path}: metadata {META_KEY} is not a mapping")
    return Preprocessing.from_dict(doc, where=str(path))


# ------------------------------------------------------------------------------ safe .pt2 loading


def load_pt2(path: str | os.PathLike) -> tuple[torch.export.ExportedProgram, Preprocessing | None]:
    """A ``.pt2`` program saved by :func:`export_pt2` and its preprocessing.

    The file is read once (a regular file, at most ``MAX_PT2_BYTES``), checked by
    :func:`cnnlab.export.pt2_safety.check_pt2` (no pickle, no code, no Python source from names, no
    unbounded allocation), and those same bytes are what ``torch.export.load`` reads."""
    from cnnlab.export.pt2_safety import MAX_PT2_BYTES, check_pt2
    from cnnlab.safeio import parse_json, read_regular

    path = Path(path)
    data = read_regular(path, what=".pt2 file", error=WeightsError, max_bytes=MAX_PT2_BYTES)
    check_pt2(data, path)
    extra: dict[str, Any] = {PT2_EXTRA: ""}
    try:
        with _quiet():
            program = torch.export.load(io.BytesIO(data), extra_files=extra)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise WeightsError(f"{path}: cannot load the program ({type(err).__name__}: {first})") from None
    meta = extra.get(PT2_EXTRA)
    prep = None
    if meta:
        doc = parse_json(meta, where=f"{path}: {PT2_EXTRA}", error=WeightsError)
        if not isinstance(doc, dict):
            raise WeightsError(f"{path}: {PT2_EXTRA} is not a mapping")
        prep = Preprocessing.from_dict(doc, where=f"{path}: {PT2_EXTRA}")
    return program, prep
