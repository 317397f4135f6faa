"""Attribution maps through captum (the maintained library; nothing here re-implements a method it
has), plus CAM (Zhou et al. 2016), which captum lacks, for the nets that end in global average pooling.

Every method returns one non-negative map per image, (N, H, W) at the input's resolution, so the
maps of different methods can be scored the same way (pointing game, deletion):

    saliency              |d logit / d x| (Simonyan et al. 2014), max over channels
    smoothgrad            saliency averaged over noisy copies (Smilkov et al. 2017), captum NoiseTunnel
    integrated_gradients  Sundararajan et al. 2017, from a black image, |.| summed over channels
    guided_backprop       Springenberg et al. 2015, |.| summed over channels
    deconvolution         Zeiler & Fergus 2014, |.| summed over channels
    occlusion             Zeiler & Fergus 2014 Fig. 7: the drop of the logit when a square is
                          blacked out (positive part), captum Occlusion
    gradcam               Selvaraju et al. 2017 on the last stage, upsampled bilinearly
    cam                   Zhou et al. 2016: the class-weighted sum of the last maps, upsampled

The CAM family that captum lacks comes from the ``grad-cam`` package (pytorch-grad-cam; the optional
extra ``cnnlab[cam]``), on the same layer as Grad-CAM, each map scaled to [0, 1] by that library:

    gradcam_plusplus      Chattopadhay et al. 2018: pixel-wise weights of the positive gradients
    scorecam              Wang et al. 2020: each map weighted by the score of the input it masks
    layercam              Jiang et al. 2021: the positive gradients times the maps, element-wise
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.inspect.layers import model_device, resolve_layer, stage_names

__all__ = ["METHODS", "CAM_FAMILY", "ALL_METHODS", "attribute", "attribute_all", "cam", "cam_head",
           "non_inplace_copy", "black_baseline"]

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "deconvolution",
           "occlusion", "gradcam", "cam")  # fmt: skip
# method -> the grad-cam package's class (optional extra [cam]; not in METHODS' default set)
CAM_FAMILY = {"gradcam_plusplus": "GradCAMPlusPlus", "scorecam": "ScoreCAM", "layercam": "LayerCAM"}
ALL_METHODS = (*METHODS, *CAM_FAMILY)


def non_inplace_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose every ``nn.ReLU`` is a fresh, not-in-place module.

    captum's GuidedBackprop and Deconvolution replace the backward of each ``nn.ReLU`` module with
    hooks on its output; an in-place ReLU returns a tensor that a later in-place op may overwrite
    before the hook reads it (torch refuses backward hooks on views modified in place), and one ReLU
    module shared by several call sites (torchvision's blocks) gets its hooks tangled. A functional
    ``F.relu`` has no module, so these methods would back-propagate plain gradients through it: the
    zoo uses ReLU modules throughout; :func:`attribute` warns when a forward calls relu without one.
    """
    clone = copy.deepcopy(model)
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.ReLU(inplace=False))
    return clone


def black_baseline(x: Tensor) -> Tensor:
    """A black image in the input's normalisation: the per-channel minimum over the batch."""
    return x.amin(dim=(0, 2, 3), keepdim=True).expand_as(x).contiguous()


def cam_head(model: nn.Module, input_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The (num_classes, C) weights and (num_classes,) bias that map the global average of
    ``forward_features`` to the logits, for inputs of ``input_shape`` (C, H, W); ConfigError for a
    net that does not end that way.

    The head is found, not assumed: every ``nn.Linear`` from C features to the logits is tried (and,
    for NiN, the identity: its last maps are the class maps), and accepted only when it reproduces
    ``forward_head`` on random maps of the real shape.
    """
    name = type(model).__name__
    if not hasattr(model, "forward_features") or not hasattr(model, "forward_head"):
        raise ConfigError(f"CAM needs forward_features/forward_head; {name} has neither")
    dev = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            shape = model.forward_features(torch.zeros(1, *input_shape, device=dev)).shape
            if len(shape) != 4:
                raise ConfigError(f"CAM needs spatial maps; {name}.forward_features gives shape {tuple(shape)}")
            probe = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(0)).to(dev)
            try:
                logits = model.forward_head(probe)
            except RuntimeError as err:
                raise ConfigError(f"CAM: {name}'s head does not take its own maps ({err})") from None
            pooled, c = probe.mean((2, 3)), int(shape[1])
            candidates = [(m.weight, m.bias if m.bias is not None else torch.zeros(m.out_features, device=dev))
                          for m in model.modules() if isinstance(m, nn.Linear) and m.in_features == c]
            if logits.shape[1] == c:
                candidates.append((torch.eye(c, device=dev), torch.zeros(c, device=dev)))
            for w, b in candidates:
                if w.shape[0] == logits.shape[1] and torch.allclose(pooled @ w.T + b, logits, atol=1e-4, rtol=1e-4):
                    return w.detach().clone(), b.detach().clone()
    finally:
        model.train(was_training)
    raise ConfigError(f"CAM needs a net ending in global average pooling and one linear layer (NiN, GoogLeNet, "
                      f"ResNet); {name}'s head is not (use gradcam)")


def cam(model: nn.Module, x: Tensor, target: Tensor) -> np.ndarray:
    """Class activation maps (Zhou et al. 2016): ``sum_c w[target, c] * f_c(x, y)`` over the last maps,
    upsampled bilinearly to the input (N, H, W); not rectified, as in the paper."""
    w, _ = cam_head(model, tuple(x.shape[1:]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps = model.forward_features(x.to(w.device))  # N x C x h x w
            m = torch.einsum("nc,nchw->nhw", w[target.to(w.device)], maps)
            m = F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    finally:
        model.train(was_training)
    return m.float().cpu().numpy()


def attribute(model: nn.Module, x: Tensor, target: Tensor, *, method: str, layer: str | None = None,
              smooth_samples: int = 16, ig_steps: int = 32, window: int | None = None,
              black: float | None = None) -> np.ndarray:
    """The ``method`` map (N, H, W) of ``x`` (N, C, H, W) for the classes ``target`` (N,).

    ``layer`` is Grad-CAM's layer (default: the last ``feature_info`` stage with maps larger than 1x1); ``window`` the side of
    the occlusion square (default H/8, stride half of it); ``black`` the value of a black pixel in the input's
    normalisation, for integrated gradients' baseline and occlusion's square (default: the minimum of ``x``; an
    experiment passes the one it read off its validation split).
    """
    if method not in ALL_METHODS:
        from cnnlab.errors import did_you_mean

        raise ConfigError(f"unknown attribution method {method!r}{did_you_mean(method, list(ALL_METHODS))} "
                          f"(methods: {', '.join(ALL_METHODS)})")
    if method == "cam":
        return cam(model, x, target)
    dev = model_device(model)
    x = x.to(dev).float()
    target = target.to(dev)
    was_training = model.training
    model.eval()
    try:
        if method in CAM_FAMILY:
            out = _grad_cam_package(model, x, target, method, layer)
        else:
            out = _captum(model, x, target, method, layer, smooth_samples, ig_steps, window, black)
    finally:
        model.train(was_training)
    return out.detach().float().cpu().numpy()


def _captum(model, x, target, method, layer, smooth_samples, ig_steps, window, black=None) -> Tensor:  # noqa: ANN001
    import captum.attr as ca

    x = x.clone().requires_grad_(True)
    if method == "saliency":
        return ca.Saliency(model).attribute(x, target=target, abs=True).amax(1)
    if method == "smoothgrad":
        sigma = 0.15 * float(x.detach().max() - x.detach().min())  # Smilkov et al.: 10-20% of the input range
        nt = ca.NoiseTunnel(ca.Saliency(model))
        return nt.attribute(x, nt_type="smoothgrad", nt_samples=smooth_samples, stdevs=sigma, target=target,
                            abs=True).amax(1)  # fmt: skip
    if method == "integrated_gradients":
        ig = ca.IntegratedGradients(model)
        base = black_baseline(x.detach()) if black is None else torch.full_like(x.detach(), black)
        return ig.attribute(x, baselines=base, target=target, n_steps=ig_steps,
                            internal_batch_size=max(1, 512 // max(1, x.shape[0])) * x.shape[0]).abs().sum(1)
    if method in ("guided_backprop", "deconvolution"):
        clone = non_inplace_copy(model).eval()
        _warn_functional_relu(clone, x)
        cls = ca.GuidedBackprop if method == "guided_backprop" else ca.Deconvolution
        with warnings.catch_warnings():  # captum announces the ReLU backward hooks it sets and removes: expected
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
            return cls(clone).attribute(x, target=target).abs().sum(1)
    if method == "occlusion":
        c, h, w = x.shape[1:]
        side = window or max(2, round(h / 8))
        stride = max(1, side // 2)
        occ = ca.Occlusion(model).attribute(
            x, sliding_window_shapes=(c, side, side), strides=(c, stride, stride),
            baselines=float(x.detach().amin()) if black is None else float(black), target=target, perturbations_per_eval=64,
        )  # fmt: skip
        return occ.sum(1).clamp_min(0)  # the occlusion's drop of the logit; a rise is not evidence
    # gradcam
    name = layer or _last_spatial_stage(model, x)
    gc = ca.LayerGradCam(model, resolve_layer(model, name))
    g = gc.attribute(x, target=target, relu_attributions=True)
    return ca.LayerAttribution.interpolate(g, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]


def _grad_cam_package(model: nn.Module, x: Tensor, target: Tensor, method: str, layer: str | None) -> Tensor:
    """Grad-CAM++, Score-CAM or Layer-CAM from the grad-cam package, on Grad-CAM's layer."""
    import contextlib
    import io

    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise ConfigError(f"attribution method {method!r} comes from the grad-cam package: "
                          "pip install 'cnnlab[cam]' (or pip install grad-cam)") from None
    name = layer or _last_spatial_stage(model, x)
    cls = getattr(pytorch_grad_cam, CAM_FAMILY[method])
    with cls(model=model, target_layers=[resolve_layer(model, name)]) as engine, \
            contextlib.redirect_stderr(io.StringIO()):  # Score-CAM's per-image progress bars
        engine.batch_size = 64  # Score-CAM's masked inputs per forward pass
        maps = engine(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target])
    return torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))


def _last_spatial_stage(model: nn.Module, x: Tensor) -> str:
    """The deepest ``feature_info`` stage whose maps are larger than 1x1 (LeNet's C5 is 1x1: a Grad-CAM
    there is one number per image)."""
    from cnnlab.inspect.layers import capture

    names = stage_names(model)
    with torch.no_grad(), capture(model, names) as store:
        model(x[:1].detach())
    spatial = [n for n in names if n in store and store[n].ndim == 4 and store[n].shape[-2:].numel() > 1]
    return spatial[-1] if spatial else names[-1]


def _warn_functional_relu(model: nn.Module, x: Tensor) -> None:
    """Warn when the forward calls relu outside ``nn.ReLU`` modules (guided backprop cannot reach it)."""
    from torch.overrides import TorchFunctionMode

    calls = {"all": 0}
    module_calls = {"n": 0}

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if getattr(func, "__name__", "") in ("relu", "relu_"):
                calls["all"] += 1
            return func(*args, **(kwargs or {}))

    hooks = [m.register_forward_hook(lambda *_: module_calls.__setitem__("n", module_calls["n"] + 1))
             for m in model.modules() if isinstance(m, nn.ReLU)]  # fmt: skip
    try:
        with torch.no_grad(), Count():
            model(x[:1].detach())
    finally:
        for h in hooks:
            h.remove()
    if calls["all"] == 0 and module_calls["n"] == 0:
        warnings.warn(f"{type(model).__name__} has no ReLU (it uses other activations, e.g. tanh): guided "
                      "backprop and deconvnet change only how a ReLU is backpropagated, so here they are the "
                      "plain gradient (the saliency map)", stacklevel=3)
    elif calls["all"] > module_calls["n"]:
        warnings.warn(f"{type(model).__name__} calls relu {calls['all'] - module_calls['n']} time(s) without an "
                      "nn.ReLU module: guided backprop/deconvolution pass plain gradients there", stacklevel=3)


def attribute_all(model: nn.Module, x: Tensor, target: Tensor, *, methods: Sequence[str] = METHODS,
                  **options) -> dict[str, np.ndarray]:
    """``{method: (N, H, W) map}``; CAM is skipped (not an error) for nets without a GAP head."""
    out = {}
    for method in methods:
        if method == "cam":
            try:
                cam_head(model, tuple(x.shape[1:]))
            except ConfigError:
                continue
        out[method] = attribute(model, x, target, method=method, **options)
    return out
