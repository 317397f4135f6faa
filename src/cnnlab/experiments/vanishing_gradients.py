"""Vanishing gradients with depth, and what normalised initialisation and skips do about them:
Glorot & Bengio, AISTATS 2010 (§4.2.2-4.3, Fig. 7); He, Zhang, Ren & Sun, ICCV 2015 (§2.2); He et
al., CVPR 2016 (lectures 000 and 004: "gradient is backpropagated to earlier layers, repeated
multiplication may make the gradient very small").

Networks of several depths built from one layer (3x3 convolutions of one width, ReLU, no batch norm:
:class:`~cnnlab.experiments.lecture_nets.DeepStackNet`), plain or with an identity skip around each
pair of convolutions, initialised with PyTorch's default (Glorot & Bengio's "standard" init) or He et
al.'s normalised one. On a batch of training images, the back-propagated gradient (of the loss with
respect to each convolution's output) is measured per layer at initialisation and after a few
updates; the criteria compare the first convolution's gradient with the last one's, in decades.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.lecture_nets import DeepStackNet
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.registry import TINY_NOTE, register_experiment
from cnnlab.experiments.statistics import compare_seeds, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.lecture_plots import plot_profiles
from cnnlab.viz.report import Plot

__all__ = ["VanishingConfig", "SCALES", "run", "gradient_profile"]

CLAIM = (
    "In a deep plain network the gradient shrinks as it is back-propagated to the earlier layers "
    "(repeated multiplication), the more so the deeper the network; a normalised initialisation "
    "(Glorot & Bengio 2010; He et al. 2015 for ReLU) and identity skips (ResNet) keep it from vanishing."
)
ARMS = (("plain", "default"), ("plain", "he"), ("residual", "default"), ("residual", "he"))

# SGD with momentum at a small rate, gradients clipped at norm 1 so that the exploding arm
# (residual + He, no normalisation) takes finite steps; no augmentation.
SGD: tuple[tuple[str, Any], ...] = (
    ("optimizer", "sgd"), ("momentum", 0.9), ("nesterov", False), ("weight_decay", 0.0), ("label_smoothing", 0.0),
    ("schedule", "constant"), ("grad_clip", 1.0), ("translate", 0), ("crop_padding", 0), ("flip", False),
)  # fmt: skip


@dataclass(frozen=True)
class VanishingConfig:
    data: str
    train: TrainSpec  # its max_steps: the "few updates" after which the gradients are measured again
    depths: tuple[int, ...] = (8, 20, 56)  # weight layers: stem + pairs of convs + classifier (6n + 2)
    width: int = 8
    batch: int = 256  # training images the gradients are measured on
    seeds: int = 3
    input_size: tuple[int, int, int] | None = None
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("vanishing-gradients", self.seeds)
        if len(self.depths) < 2 or list(self.depths) != sorted(set(self.depths)):
            raise ConfigError(f"vanishing-gradients: depths must be at least two increasing depths, got {self.depths!r}")
        if self.train.max_steps is None:
            raise ConfigError("vanishing-gradients: train.max_steps must say how many updates to take")


SCALES = {
    "tiny": VanishingConfig(data="synthetic", data_options=(("shape", (1, 8, 8)), ("n", 64)), depths=(4, 8),
                            width=4, batch=16, seeds=2,
                            train=TrainSpec(recipe="lenet", epochs=1, batch_size=16, lr=0.01, max_steps=2, overrides=SGD)),
    # mnist-5k at 16x16, 8 channels: the gradients at initialisation and after 20 updates at batch 64.
    "quick": VanishingConfig(data="mnist-5k", input_size=(1, 16, 16), depths=(8, 20, 56), width=8, seeds=3,
                             train=TrainSpec(recipe="lenet", epochs=1, batch_size=64, lr=0.01, max_steps=20,
                                             overrides=SGD)),
    # CIFAR-10 at its size and 16 channels (the first stage of a CIFAR ResNet), 100 updates.
    "full": VanishingConfig(data="cifar10", depths=(8, 20, 56, 110), width=16, seeds=3,
                            train=TrainSpec(recipe="lenet", epochs=1, batch_size=128, lr=0.01, max_steps=100,
                                            overrides=SGD)),
}  # fmt: skip


def gradient_profile(model: DeepStackNet, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Per convolution, in depth order: ``output`` the root-mean-square over images of the norm of the
    loss's gradient with respect to the convolution's output (the back-propagated signal), and
    ``weight`` the norm of the gradient of its weights; from one backward of the summed cross-entropy
    (a sum, so that per-image gradients do not shrink with the batch). Nothing is updated.

    Measured on a float64 copy: the gradient at the first layer of a deep plain net can fall below
    1e-25, where float32 convolutions flush it to exactly 0 (measured: depth 56, default init)."""
    grads: dict[str, torch.Tensor] = {}
    model = copy.deepcopy(model).double()
    x = x.double()
    convs = model.convs()

    def keep(name: str):
        def hook(_m: Any, _args: Any, out: torch.Tensor) -> None:
            out.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in convs]
    try:
        F.cross_entropy(model(x), y, reduction="sum").backward()
    finally:
        for h in handles:
            h.remove()
    n = len(y)
    return {"output": [float(grads[name].norm() / math.sqrt(n)) for name, _ in convs],
            "weight": [float(m.weight.grad.norm()) for _, m in convs]}


def _ratio(profile: dict[str, list[float]], key: str = "output") -> float:
    """log10 of the first convolution's gradient (back-propagated: ``output``; of its weights:
    ``weight``) over the last one's."""
    first, last = profile[key][0], profile[key][-1]
    return math.log10(max(first, 1e-300) / max(last, 1e-300))


def plot_vanishing(results: dict, out_dir: Path) -> list[Plot]:
    deep = str(results["depths"][-1])
    titles = {"init": f"at initialisation, depth {deep}", "trained": f"after the updates, depth {deep}"}
    panels = {titles[when]: {arm: row["mean_profile"][when] for arm, row in results["arms"][deep].items()}
              for when in ("init", "trained")}  # fmt: skip
    return [plot_profiles(panels, out_dir, "vanishing_profiles.png", xlabel="convolution (input side first)",
                          ylabel="gradient at the output (RMS per image)",
                          caption=f"Back-propagated gradient per convolution of the {deep}-layer networks, mean over "
                          "seeds, at initialisation and after the scale's updates: plain (default init) falls "
                          "towards the input.")]


@register_experiment(
    name="vanishing-gradients",
    title="Vanishing gradients against depth: plain vs residual, default vs normalised init",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "004_727cdc94a52d7899.txt"),
    paper="Glorot & Bengio, AISTATS 2010; He, Zhang, Ren & Sun, ICCV 2015 and CVPR 2016",
    scales=SCALES,
    plot=plot_vanishing,
)
def run(ctx: ExperimentContext, cfg: VanishingConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    x, y = data.train.x[: cfg.batch], data.train.y[: cfg.batch]
    arms = {str(d): {f"{kind}, {init}": _measure_arm(ctx, cfg, data, x, y, d, kind, init) for kind, init in ARMS}
            for d in cfg.depths}  # fmt: skip
    comps = _comparisons(arms, cfg)
    results = {"depths": list(cfg.depths), "seeds": seed_list(ctx, cfg.seeds), "arms": arms,
               **{k: vars(c) for k, c in comps.items()}}
    return Outcome(results=results, criteria=_criteria(comps, cfg), tables=[_table(arms, cfg)],
                   setup=_setup(ctx, cfg, data), notes=_notes(ctx, arms, cfg))


def _measure_arm(ctx: ExperimentContext, cfg: VanishingConfig, data: Any, x: torch.Tensor, y: torch.Tensor,
                 depth: int, kind: str, init: str) -> dict[str, Any]:
    """One (depth, plain/residual, init) network per seed: gradient profiles at init and after training."""
    per_seed = []
    for seed in seed_list(ctx, cfg.seeds):
        def build(seed: int = seed) -> DeepStackNet:
            torch.manual_seed(seed)
            return DeepStackNet(depth=depth, width=cfg.width, residual=kind == "residual", init=init,
                                in_chans=data.input_size[0], num_classes=data.num_classes)

        at_init = gradient_profile(build(), x, y)
        fit = seeded(ctx, seed).train(f"{kind}-{depth}, {init} init (seed {seed})", build, data, cfg.train,
                                      key={"net": "deepstack", "depth": depth, "kind": kind, "init": init,
                                           "width": cfg.width})  # fmt: skip
        trained = gradient_profile(fit.model.train(), x, y)
        per_seed.append(dict(seed=seed, init=at_init, trained=trained, log_ratio_init=_ratio(at_init),
                             log_ratio_trained=_ratio(trained), weight_log_ratio_init=_ratio(at_init, "weight"),
                             train_loss=float(fit.step_losses[-1])
                             if fit.step_losses else float("nan")))
    mean = lambda key: statistics.fmean(s[key] for s in per_seed)  # noqa: E731
    profile = lambda when: [statistics.fmean(col) for col in zip(*(s[when]["output"] for s in per_seed))]  # noqa: E731
    return dict(depth=depth, residual=kind == "residual", init_scheme=init, per_seed=per_seed,
                log_ratio_init=[s["log_ratio_init"] for s in per_seed],
                log_ratio_trained=[s["log_ratio_trained"] for s in per_seed],
                mean_log_ratio_init=mean("log_ratio_init"), mean_log_ratio_trained=mean("log_ratio_trained"),
                mean_weight_log_ratio_init=mean("weight_log_ratio_init"),
                mean_profile={"init": profile("init"), "trained": profile("trained")})


def _comparisons(arms: dict, cfg: VanishingConfig) -> dict[str, Any]:
    shallow, deep = str(cfg.depths[0]), str(cfg.depths[-1])
    size = lambda d, arm, when: [abs(v) for v in arms[d][arm][f"log_ratio_{when}"]]  # noqa: E731
    return {
        "plain_deep_vs_shallow_init": compare_seeds(arms[deep]["plain, default"]["log_ratio_init"],
                                                    arms[shallow]["plain, default"]["log_ratio_init"], expect="less"),
        "plain_deep_vs_shallow_trained": compare_seeds(arms[deep]["plain, default"]["log_ratio_trained"],
                                                       arms[shallow]["plain, default"]["log_ratio_trained"], expect="less"),
        "he_vs_default_init": compare_seeds(size(deep, "plain, he", "init"), size(deep, "plain, default", "init"),
                                            expect="less"),
        "skip_vs_plain_init": compare_seeds(size(deep, "residual, default", "init"),
                                            size(deep, "plain, default", "init"), expect="less"),
    }  # fmt: skip


def _criteria(comps: dict, cfg: VanishingConfig) -> list:
    s, d = cfg.depths[0], cfg.depths[-1]
    dec = dict(scale=1.0, unit=" decades")

    def mean(c: Any, side: str) -> str:
        return f"{statistics.fmean(getattr(c, side)):+.2f}"

    c1, c2, c3, c4 = (comps[k] for k in ("plain_deep_vs_shallow_init", "plain_deep_vs_shallow_trained",
                                         "he_vs_default_init", "skip_vs_plain_init"))
    return [
        seed_criterion(f"plain nets, default init: the first layer's gradient relative to the last is smaller at "
                       f"depth {d} than at depth {s} (at initialisation)",
                       f"log10(first/last) {mean(c1, 'a')} at depth {d}, {mean(c1, 'b')} at depth {s}", c1, **dec),
        seed_criterion(f"the same after {cfg.train.max_steps} updates",
                       f"log10(first/last) {mean(c2, 'a')} at depth {d}, {mean(c2, 'b')} at depth {s}", c2, **dec),
        seed_criterion(f"He et al.'s normalised init keeps the depth-{d} plain net's gradients nearer one scale "
                       "than the default init (|log10(first/last)|, at initialisation)",
                       f"{mean(c3, 'a')} (He) against {mean(c3, 'b')} decades (default)", c3, **dec),
        seed_criterion(f"identity skips keep the depth-{d} net's gradients nearer one scale than the plain net's, "
                       "both with the default init (|log10(first/last)|, at initialisation)",
                       f"{mean(c4, 'a')} (residual) against {mean(c4, 'b')} decades (plain)", c4, **dec),
    ]  # fmt: skip


def _table(arms: dict, cfg: VanishingConfig) -> Table:
    rows = []
    for d, by_arm in arms.items():
        for arm, r in by_arm.items():
            init_p, trained_p = r["mean_profile"]["init"], r["mean_profile"]["trained"]
            rows.append((int(d), arm, f"{init_p[0]:.3g}", f"{init_p[-1]:.3g}", round(r["mean_log_ratio_init"], 2),
                         f"{trained_p[0]:.3g}", f"{trained_p[-1]:.3g}", round(r["mean_log_ratio_trained"], 2)))
    return Table(
        title="Back-propagated gradient at the first and last convolution (RMS per image), means over seeds; "
        "log10(first/last) < 0: the gradient shrinks towards the input",
        columns=("depth", "net, init", "first (init)", "last (init)", "log10 first/last (init)",
                 f"first ({cfg.train.max_steps} updates)", "last", "log10 first/last"),
        rows=tuple(rows),
    )


def _setup(ctx: ExperimentContext, cfg: VanishingConfig, data: Any) -> list[str]:
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}; gradients measured on the first "
        f"{min(cfg.batch, len(data.train.y))} training images with their labels (one backward of the summed "
        "cross-entropy on a float64 copy of the net, nothing updated: float32 convolutions flush gradients "
        "below about 1e-25 to 0).",
        f"Networks: depths {', '.join(map(str, cfg.depths))} weight layers (a 3x3 stem, pairs of 3x3 convolutions of "
        f"{cfg.width} channels with ReLU, global average pooling, a linear classifier), no batch norm; plain or with "
        "an identity skip around each pair; init `default` (PyTorch's U(+-1/sqrt(fan_in)): Glorot & Bengio's "
        "standard init) or `he` (N(0, 2/fan_in), zero biases).",
        f"Training for the second measurement: {cfg.train.describe()}; seeds {seed_list(ctx, cfg.seeds)} (each its own "
        "initialisation; the same seeds for every arm).",
        "Verdicts: paired differences over seeds beyond 2 standard errors (`compare_seeds`), in decades "
        "(log10 of the first convolution's gradient over the last one's).",
    ]


def _notes(ctx: ExperimentContext, arms: dict, cfg: VanishingConfig) -> list[str]:
    deep = arms[str(cfg.depths[-1])]
    w, b = deep["plain, default"]["mean_weight_log_ratio_init"], deep["plain, default"]["mean_log_ratio_init"]
    notes = [
        f"At depth {cfg.depths[-1]}, residual + He init: log10(first/last) {deep['residual, he']['mean_log_ratio_init']:+.2f} "
        "at initialisation: without normalisation each skip adds a branch of the input's variance, so the signal "
        "and the gradient grow with depth (explode) instead; ResNets pair skips with batch norm.",
        f"The weight gradients (`weight` in results.json) of the depth-{cfg.depths[-1]} plain net with the default "
        f"init span {w:+.2f} decades first/last at initialisation, against {b:+.2f} for the back-propagated "
        "gradient. Glorot & Bengio found the weight gradients of their tanh nets roughly constant across layers "
        "(§4.2.2: a layer's weight gradient is its input times its output gradient, and the input shrinks forward "
        "as the gradient shrinks backward); here they vary "
        + ("far less." if abs(w) < abs(b) / 2 else "somewhat less." if abs(w) < abs(b) else "no less."),
        f"After {cfg.train.max_steps} updates the depth-{cfg.depths[-1]} plain net with He's init spans "
        f"{deep['plain, he']['mean_log_ratio_trained']:+.2f} decades (at initialisation "
        f"{deep['plain, he']['mean_log_ratio_init']:+.2f}): a normalised init starts the gradients at one scale, "
        "it does not keep them there once training moves the weights (hence batch norm).",
    ]
    if ctx.scale == "tiny":
        notes.append(TINY_NOTE)
    return notes
