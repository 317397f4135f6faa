"""Learning an identity: hard for a stack of plain layers, easy with a skip (He, Zhang, Ren & Sun,
CVPR 2016 §3.1; lectures 002 and 004: "difficult to learn an identity mapping in a deep
architecture"; "if identity were optimal, easy to set weights as 0").

A stack of ``k`` 3x3 convolutions with ReLUs between them
(:class:`~cnnlab.experiments.lecture_nets.IdentityStack`) is trained to output its input image
(regression, mean squared error): plain, ``y = F(x)``, it must find weights that multiply out to the
identity through the ReLUs; residual, ``y = x + F(x)``, it needs only F = 0. Both have the same
layers and initialisation; the error after the same budget is compared over seeds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import plot_arms
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.lecture_nets import IdentityStack, relative_error
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.overrides import ADAM
from cnnlab.experiments.registry import TINY_NOTE, register_experiment
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.training.tasks import Task, register_task
from cnnlab.viz.report import Plot

__all__ = ["IdentityConfig", "IdentityTask", "SCALES", "run"]

CLAIM = (
    "An identity mapping is difficult to learn for a stack of non-linear layers, and easy with a "
    "shortcut: the residual block needs only to drive its weights to zero (He et al. 2016 §3.1)."
)


@register_task("identity")
class IdentityTask(Task):
    """Regression of the input itself: mean squared error between the output and the (normalised)
    input; ``rel`` is the squared error over the input's energy (0: a perfect identity, 1: zero output)."""

    name = "identity"
    monitor = "loss"
    mode = "min"
    stat_names = ("sq_err", "energy", "values", "count")
    metrics = (("rel", "relative squared error", ""), ("loss", "MSE", ""))

    def _sums(self, out: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        out, x = out.float(), x.float()
        loss = F.mse_loss(out, x)
        f64 = lambda v: torch.as_tensor(v, dtype=torch.float64, device=x.device)  # noqa: E731
        sums = torch.stack([f64(((out - x) ** 2).sum().detach()), f64((x**2).sum()), f64(x.numel()), f64(len(x))])
        return loss, sums

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._sums(out, x)

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return self._sums(model(x), x)[1]

    def summarize(self, sums: Tensor) -> dict[str, float]:
        sq, energy, values, _ = (float(v) for v in sums.cpu())
        return {"loss": sq / max(values, 1.0), "rel": sq / max(energy, 1e-12)}


@dataclass(frozen=True)
class IdentityConfig:
    data: str
    train: TrainSpec
    layers: tuple[int, ...] = (3, 9)  # convolutions in the stack (shallow, deep)
    width: int = 8
    seeds: int = 3
    input_size: tuple[int, int, int] | None = None
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("identity-mapping", self.seeds)
        if len(self.layers) != 2 or not 2 <= self.layers[0] < self.layers[1]:
            raise ConfigError(f"identity-mapping: layers must be (shallow, deep), each >= 2, got {self.layers!r}")


# Adam (the small nets' optimiser, overrides.ADAM) at 1e-3: the plain stack gets an optimiser that
# rescales its small gradients, so a failure is not only SGD's.
IDENTITY_ADAM = (*ADAM[:1], ("lr", 0.001), *ADAM[2:], ("translate", 0), ("schedule", "constant"))

SCALES = {
    "tiny": IdentityConfig(data="synthetic", data_options=(("shape", (1, 8, 8)), ("n", 64)), layers=(2, 4), width=4,
                           seeds=2, train=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=IDENTITY_ADAM)),
    # mnist-5k at 16x16, 8 channels, 3 against 9 convolutions; 4 epochs at batch 64 (228 updates).
    "quick": IdentityConfig(data="mnist-5k", input_size=(1, 16, 16), layers=(3, 9), width=8, seeds=3,
                            train=TrainSpec(recipe="lenet", epochs=4, batch_size=64, overrides=IDENTITY_ADAM)),
    "full": IdentityConfig(data="cifar10", layers=(3, 18), width=16, seeds=3,
                           train=TrainSpec(recipe="lenet", epochs=10, batch_size=128, overrides=IDENTITY_ADAM)),
}  # fmt: skip


def plot_identity(results: dict, out_dir: Path) -> list[Plot]:
    groups = {f"{k} convolutions": {kind: results["arms"][f"{kind}-{k}"]["test_rel"] for kind in ("plain", "residual")}
              for k in results["layers"]}  # fmt: skip
    return [plot_arms(groups, out_dir, "identity_mapping.png", ylabel="relative squared error (%)",
                      caption="Test error of each stack trained to output its input, one dot per seed: the share "
                      "of the input's energy not reproduced (lower is better).")]


@register_experiment(
    name="identity-mapping",
    title="Learning the identity: plain layers against a skip",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt", "004_727cdc94a52d7899.txt"),
    paper="He, Zhang, Ren & Sun, CVPR 2016 (§3.1)",
    scales=SCALES,
    plot=plot_identity,
)
def run(ctx: ExperimentContext, cfg: IdentityConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    x_test = data.test.x[:500]
    arms: dict[str, dict[str, Any]] = {}
    for k in cfg.layers:
        for kind in ("plain", "residual"):
            rows = []
            for seed in seed_list(ctx, cfg.seeds):
                def build(seed: int = seed, k: int = k, kind: str = kind) -> IdentityStack:
                    torch.manual_seed(seed)
                    return IdentityStack(layers=k, width=cfg.width, residual=kind == "residual",
                                         in_chans=data.input_size[0])

                with torch.no_grad():
                    start = relative_error(build()(x_test), x_test)
                fit = seeded(ctx, seed).train(f"{kind} stack of {k} (seed {seed})", build, data, cfg.train,
                                              key={"net": "identity", "layers": k, "kind": kind, "width": cfg.width},
                                              task="identity")  # fmt: skip
                rows.append(dict(seed=seed, init_rel=start, test_rel=float(fit.test["rel"]),
                                 val_rel=float(fit.val.get("rel", float("nan")))))
            arms[f"{kind}-{k}"] = dict(layers=k, residual=kind == "residual", per_seed=rows,
                                       init_rel=[r["init_rel"] for r in rows], test_rel=[r["test_rel"] for r in rows])
    comps = _comparisons(arms, cfg)
    results = {"layers": list(cfg.layers), "seeds": seed_list(ctx, cfg.seeds), "arms": arms,
               **{k: vars(c) for k, c in comps.items()}}
    return Outcome(results=results, criteria=_criteria(arms, comps, cfg), tables=[_table(arms)],
                   setup=_setup(ctx, cfg, data), notes=_notes(ctx, arms, cfg))


def _comparisons(arms: dict, cfg: IdentityConfig) -> dict[str, Any]:
    s, d = cfg.layers
    err = lambda name: arms[name]["test_rel"]  # noqa: E731
    return {f"plain_vs_residual_{s}": compare_seeds(err(f"plain-{s}"), err(f"residual-{s}")),
            f"plain_vs_residual_{d}": compare_seeds(err(f"plain-{d}"), err(f"residual-{d}")),
            "plain_deep_vs_shallow": compare_seeds(err(f"plain-{d}"), err(f"plain-{s}"))}


def _criteria(arms: dict, comps: dict, cfg: IdentityConfig) -> list:
    s, d = cfg.layers
    pct = lambda name: f"{100 * statistics.fmean(arms[name]['test_rel']):.3g}%"  # noqa: E731
    return [
        seed_criterion(f"with {k} convolutions, the plain stack's error is higher than the residual one's",
                       f"relative error plain {pct(f'plain-{k}')}, residual {pct(f'residual-{k}')}",
                       comps[f"plain_vs_residual_{k}"]) for k in (s, d)
    ] + [seed_criterion(f"the identity is harder the more plain layers: {d} plain convolutions end with a higher "
                        f"error than {s}", f"plain-{d} {pct(f'plain-{d}')}, plain-{s} {pct(f'plain-{s}')}",
                        comps["plain_deep_vs_shallow"])]  # fmt: skip


def _table(arms: dict) -> Table:
    return Table(
        title="Relative squared error (squared error over the input's energy) on the test images, over seeds",
        columns=("stack", "convolutions", "at init (%)", "after training (%)", "std", "per seed (%)"),
        rows=tuple((("residual" if a["residual"] else "plain"), a["layers"], round(100 * statistics.fmean(a["init_rel"]), 2),
                    f"{100 * mean_std(a['test_rel'])[0]:.3g}", f"{100 * mean_std(a['test_rel'])[1]:.2g}",
                    ", ".join(f"{100 * v:.3g}" for v in a["test_rel"])) for a in arms.values()),
    )  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: IdentityConfig, data: Any) -> list[str]:
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))} (normalised images; labels unused); the "
        "target of each image is the image itself.",
        f"Networks: stacks of {cfg.layers[0]} and {cfg.layers[1]} 3x3 convolutions (image -> {cfg.width} maps -> ... -> "
        "image, ReLU between, PyTorch's default init), plain y = F(x) or residual y = x + F(x): the same weights "
        "and initial values for both.",
        f"Training: mean squared error, {cfg.train.describe()}; seeds {seed_list(ctx, cfg.seeds)}, paired; the "
        "epoch with the lowest validation error is kept and evaluated once on the test images.",
        "Verdicts: mean paired difference over seeds beyond 2 standard errors (`compare_seeds`).",
    ]


def _notes(ctx: ExperimentContext, arms: dict, cfg: IdentityConfig) -> list[str]:
    d = cfg.layers[1]
    notes = [f"At initialisation the residual stack is already close to the identity (relative error "
             f"{100 * statistics.fmean(arms[f'residual-{d}']['init_rel']):.1f}% with {d} convolutions; plain "
             f"{100 * statistics.fmean(arms[f'plain-{d}']['init_rel']):.1f}%): the skip makes the identity the "
             "default, which is the point of He et al.'s argument, not an accident of the setup.",
             "A plain stack with ReLUs can represent the identity exactly (relu(x) - relu(-x) = x through two "
             "channels), so its error is a matter of optimisation within the budget, not of capacity."]
    if ctx.scale == "tiny":
        notes.append(TINY_NOTE)
    return notes
