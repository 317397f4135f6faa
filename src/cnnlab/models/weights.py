"""Loading and saving model weights safely: no file ever runs code.

``load_weights`` accepts ``.safetensors`` files and ``torch.save`` files (``.pth``/``.pt``,
torchvision's published weight files included). The format is recognised from the file's first bytes,
not from its name. ``torch.save`` files are read only with ``torch.load(..., weights_only=True)``,
which refuses any Python object but tensors and plain containers; there is no fallback to unsafe
loading, whatever the error. A ``sha256`` pins a file to a known content.

``save_weights`` writes safetensors atomically with :func:`cnnlab.atomic.atomic_write` (re-exported
here as ``atomic_write``), cnnlab's one atomic writer.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.atomic import TMP_PREFIX, atomic_write, fsync_dir  # re-exported: the one atomic writer
from cnnlab.errors import WeightsError
from cnnlab.safeio import GiB, read_regular

__all__ = [
    "LoadReport",
    "load_weights",
    "load_state",
    "read_state_dict",
    "save_weights",
    "state_dict_for_saving",
    "atomic_write",
    "fsync_dir",
    "TMP_PREFIX",
    "sha256_hex",
]

# Keys under which training frameworks commonly nest the model's state dict (Lightning "state_dict",
# DeiT/timm/detectron "model", many scripts "model_state_dict" or "net"); first match wins.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
# Prefixes that wrappers add to every key: DistributedDataParallel/DataParallel, torch.compile.
_KEY_PREFIXES = ("module.", "_orig_mod.")
# A full sha256, or the 8+ hex-digit prefix torchvision puts in its file names (resnet18-f37072fd.pth),
# which torchvision's own check_hash compares the same way.
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{8,64}$")
# The largest weights file read (into memory): VGG-19's is 0.55 GB; a bigger file is refused before
# a byte of it is read.
MAX_WEIGHTS_BYTES = 32 * GiB


# --------------------------------------------------------------------------------------- writing


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose state dict has the model's own key names (not DDP's or compile's)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def state_dict_for_saving(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict as safetensors can store it: CPU, contiguous, no shared storage.

    Tied weights (two keys on one storage) would make safetensors refuse the file; the second key
    gets a copy instead, so the file still holds every key ``model.load_state_dict`` expects.
    """
    out: dict[str, Tensor] = {}
    seen: set[tuple[str, int]] = set()
    for key, value in _unwrap_model(model).state_dict().items():
        t = value.detach().to("cpu").contiguous()
        storage = (str(t.device), t.untyped_storage().data_ptr())
        if storage[1] != 0 and storage in seen:
            t = t.clone()
        seen.add((str(t.device), t.untyped_storage().data_ptr()))
        out[key] = t
    return out


def save_weights(model: nn.Module, path: str | os.PathLike, *, metadata: Mapping[str, str] | None = None) -> str:
    """Save ``model``'s state dict to ``path`` as safetensors, atomically; returns the file's sha256."""
    from safetensors.torch import save

    data = save(state_dict_for_saving(model), metadata={"format": "pt", **(metadata or {})})
    atomic_write(path, data)
    return sha256_hex(data)


# --------------------------------------------------------------------------------------- reading


@dataclass
class LoadReport:
    """What :func:`load_weights` did: the file, its sha256, and the keys that did not match."""

    path: str
    sha256: str
    format: str  # "safetensors", "torch-zip" or "torch-pickle"
    loaded: list[str] = field(default_factory=list)  # model keys set from the file
    missing: list[str] = field(default_factory=list)  # model keys the file lacks
    unexpected: list[str] = field(default_factory=list)  # file keys the model lacks
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 8) -> str:
        """The problems on one line: missing, unexpected and mismatched keys (at most ``limit`` each)."""

        def listed(items: list[str]) -> str:
            more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {listed(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {listed(self.unexpected)}")
        if self.mismatched:
            shapes = [f"{k} (file {list(a)} vs model {list(b)})" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {listed(shapes)}")
        return "; ".join(parts) if parts else "all keys match"


def _sniff_format(data: bytes) -> str | None:
    """Recognise a weights file by its first bytes: safetensors, torch zip, or a legacy torch pickle."""
    if data[:4] == b"PK\x03\x04":
        return "torch-zip"  # torch.save's default format since 1.6
    if len(data) >= 10 and data[8:9] == b"{":
        header_len = int.from_bytes(data[:8], "little")  # safetensors: u64 header length, then JSON
        if 2 <= header_len <= len(data) - 8:
            return "safetensors"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-pickle"  # torch.save(..., _use_new_zipfile_serialization=False): pickle protocol 2+
    return None


def _unsafe_reason(err: BaseException) -> str:
    """What torch's weights_only refusal objects to (the blocked global, by name), without its advice
    to re-run with ``weights_only=False``, which cnnlab never does.

    torch 2.14 writes: "Weights only load failed. In PyTorch 2.6, ... Re-running `torch.load` with
    `weights_only` set to `False` will likely succeed, ... \n\n\nTrying to load unsupported GLOBAL
    posix.system whose module posix is blocked.\n\nCheck the documentation ..."; older versions
    "... WeightsUnpickler error: Unsupported global: GLOBAL posix.system was not an allowed global ...".
    """
    text = str(err)
    m = re.search(r"GLOBAL\s+([A-Za-z_][\w.]*[\w])", text)
    if m:
        return f"it references the Python global {m.group(1)}, which loading with weights_only=True blocks"
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    candidates = [m.group(1)] if m else [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    advice = re.compile(r"weights_only|Weights only load failed|Check the documentation|safe_globals|trusted", re.I)
    for paragraph in candidates:
        sentence = re.split(r"(?<=\.)\s", paragraph.strip())[0]
        if sentence and not advice.search(sentence):
            return sentence.rstrip(".")[:300]
    return "torch.load(weights_only=True) refused it"


def read_state_dict(path: str | os.PathLike, *, sha256: str | None = None) -> tuple[dict[str, Tensor], str, str]:
    """Read a weights file safely: ``(state_dict, sha256 of the file, format)``.

    The file is read once; its hash is checked against ``sha256`` (if given) before it is parsed,
    and the bytes that were hashed are the bytes that are parsed. Nested wrappings
    (``{"state_dict": ...}``, ``{"model": ...}``) and ``module.``/``_orig_mod.`` key prefixes are
    removed. Any problem raises :class:`WeightsError` naming the file.
    """
    path = Path(path)
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256_RE.match(sha256)):
        raise WeightsError(f"--sha256 must be 8 to 64 hexadecimal digits (the full hash or the prefix in "
                           f"torchvision's file names), got {sha256!r}")
    # Only a regular file, its size checked first: a FIFO would block, /dev/zero never end.
    data = read_regular(path, what="weights file", error=WeightsError, max_bytes=MAX_WEIGHTS_BYTES)
    digest = sha256_hex(data)
    if sha256 is not None and not digest.startswith(sha256.lower()):
        raise WeightsError(f"{path}: sha256 mismatch: expected {sha256.lower()}, file has {digest}")

    fmt = _sniff_format(data)
    if fmt is None:
        raise WeightsError(
            f"{path} is not a weights file: neither safetensors nor a torch.save zip/pickle "
            f"({len(data)} bytes, starts with {data[:8]!r})"
        )
    if fmt == "safetensors":
        from safetensors.torch import load

        try:
            obj: Any = load(data)
        except Exception as err:  # safetensors raises its own SafetensorError for bad headers/lengths
            raise WeightsError(f"{path}: invalid safetensors file ({err})") from None
    else:
        try:
            with warnings.catch_warnings():
                # torch warns about pickle protocols it did not write; the load is still checked.
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                # A TorchScript archive is refused below, in one line; torch's own note about
                # "dispatching to torch.jit.load" would only confuse (nothing is dispatched).
                warnings.filterwarnings("ignore", message=".*TorchScript archive")
                obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise WeightsError(
                f"{path}: refused to load: the file contains Python code or objects other than tensors "
                f"({_unsafe_reason(err)}); cnnlab loads .pth files only with torch.load(weights_only=True) "
                "and never unsafely; convert the file to a plain state dict or safetensors in a trusted "
                "environment"
            ) from None
        except Exception as err:  # truncated zip, bad pickle stream: torch raises RuntimeError/EOFError/...
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            if "TorchScript" in first:
                raise WeightsError(
                    f"{path} is a TorchScript archive, which runs code when loaded; cnnlab loads only "
                    "state dicts (save model.state_dict() or safetensors instead)"
                ) from None
            if fmt == "torch-zip":
                first = first.split(". ")[0]  # torch appends advice to its zip errors
                raise WeightsError(
                    f"{path}: not a readable torch.save archive (corrupted, truncated, or another kind of zip): "
                    f"{first[:200]}"
                ) from None
            raise WeightsError(f"{path}: corrupted or truncated {fmt} file ({first[:200]})") from None
    return _as_state_dict(obj, path), digest, fmt


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """Find the state dict inside what a file holds and strip wrapper prefixes from its keys."""
    for _ in range(3):  # wrappings nest at most a couple of levels in practice
        if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else ""
        raise WeightsError(
            f"{path}: holds a {kind}{keys}, not a state dict of tensors (expected a mapping of names "
            f"to tensors, possibly under one of {', '.join(repr(k) for k in _WRAPPER_KEYS)})"
        )
    if not (isinstance(obj, Mapping) and all(isinstance(v, Tensor) for v in obj.values())):
        raise WeightsError(f"{path}: no state dict of tensors found (nested too deeply)")
    state = {str(k): v for k, v in obj.items()}
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _compare(model_state: Mapping[str, Tensor], file_state: Mapping[str, Tensor], report: LoadReport) -> dict[str, Tensor]:
    """Fill ``report`` with the differences; return the entries that can be loaded."""
    loadable = {}
    for key, value in file_state.items():
        if key not in model_state:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(model_state[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(model_state[key].shape)))
        else:
            loadable[key] = value
    # A tied weight stored once (safetensors' save_model keeps one name per shared tensor) is loaded
    # through the name that is there, so its other names are not missing.
    storage_of = {k: v.untyped_storage().data_ptr() for k, v in model_state.items() if v.device.type != "meta"}
    loaded_storages = {storage_of[k] for k in loadable if storage_of.get(k)}
    # BatchNorm fills a missing `num_batches_tracked` itself (old torchvision files lack it), as
    # torch's own load_state_dict does, so it is not reported missing either.
    report.missing = [
        k for k in model_state
        if k not in file_state and not k.endswith("num_batches_tracked") and storage_of.get(k) not in loaded_storages
    ]
    report.loaded = sorted(loadable)
    return loadable


def _refuse_non_finite(state: Mapping[str, Tensor], path: str | os.PathLike) -> None:
    """Weights holding NaN or infinity (a diverged run's) give NaN outputs: say so instead of an accuracy."""
    bad = []
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            n = int((~torch.isfinite(value)).sum())
            if n:
                has_nan = bool(torch.isnan(value).any())
                bad.append(f"{key} ({n:,} of {value.numel():,} values {'NaN' if has_nan else 'infinite'})")
    if bad:
        more = f" and {len(bad) - 3} more tensor(s)" if len(bad) > 3 else ""
        raise WeightsError(
            f"{path}: the weights hold NaN or infinite values, so the model's outputs would be NaN: "
            f"{', '.join(bad[:3])}{more} (weights saved from a diverged training run?)"
        )


def _drop_absent_aux_heads(model: nn.Module, report: LoadReport) -> None:
    """torchvision's GoogLeNet files carry the auxiliary heads; a model built without them drops
    those entries with a note, as torchvision's own builder does, instead of failing strict loading."""
    absent = [h for h in ("aux1", "aux2") if hasattr(model, h) and getattr(model, h) is None]
    dropped = [k for k in report.unexpected if k.split(".")[0] in absent]
    if not dropped:
        return
    report.unexpected = [k for k in report.unexpected if k not in dropped]
    warnings.warn(f"{report.path}: {len(dropped)} entries of the auxiliary heads ({', '.join(absent)}) dropped: "
                  "the model was built without them (aux_logits=false)", stacklevel=3)


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    sha256: str | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load a ``.safetensors`` or ``.pth``/``.pt`` file into ``model`` in place; return a :class:`LoadReport`.

    ``strict=True``: any missing or unexpected key or shape mismatch raises :class:`WeightsError`
    listing them, and the model is left unchanged. ``strict=False``: the matching entries are
    loaded and the report lists what was not (for fine-tuning with a new head, for instance).
    ``sha256`` pins the file: a different content raises :class:`WeightsError` with both hashes.
    """
    state, digest, fmt = read_state_dict(path, sha256=sha256)
    return load_state(model, state, report=LoadReport(path=str(path), sha256=digest, format=fmt), strict=strict)


def load_state(model: nn.Module, state: Mapping[str, Tensor], *, report: LoadReport, strict: bool = True) -> LoadReport:
    """Load ``state`` (read from the file ``report`` names) into ``model`` in place, as :func:`load_weights`."""
    path = report.path
    target = _unwrap_model(model)
    loadable = _compare(target.state_dict(), state, report)
    _drop_absent_aux_heads(target, report)
    if strict and not report.complete:
        raise WeightsError(f"{path} does not match {type(target).__name__}: {report.describe()} (use strict=False / --no-strict to load only what matches)")
    if not loadable:
        raise WeightsError(f"{path}: no entry matches {type(target).__name__}: {report.describe()}")
    _refuse_non_finite(loadable, path)
    with torch.no_grad():
        target.load_state_dict(loadable, strict=False)
    return report
