"""Training a GAN with the engine: the "gan" task (two optimisers, alternating updates), its quality
measure, and its pictures.

**The update** (Goodfellow et al. 2014, Algorithm 1 with k = 1; Radford et al. 2016 §4): on each
batch of real images x (mapped from the bundle's normalisation to the generator's [-1, 1]) and as
many draws z ~ N(0, I),

    discriminator:  minimise  BCE(D(x), 1) + BCE(D(G(z)), 0)          (its own Adam)
    generator:      minimise  BCE(D(G(z)), 1)                           (its own Adam, after D's step)

the generator's loss being the non-saturating one of Goodfellow et al. §3 ("maximize log D(G(z))").
Both optimisers are the recipe's (``dcgan``: Adam, lr 2e-4, beta1 0.5, batch 128); the checkpoints
save and restore both, so a killed run resumes bitwise. ``steps.csv``'s loss is D's + G's.
A conditional model (``cdcgan``) is given the real batch's labels for its fakes too.

**The quality measure** is a Fréchet distance (:mod:`cnnlab.training.frechet`) between the features
of real and generated images, computed on the penultimate features (the input of the output layer)
of a *cnnlab classifier trained on the same data*, the "judge": by default LeNet-5 with ReLUs
(``lenet5_relu``, the ``lenet`` recipe for ``judge_epochs`` epochs, seed 0, on the bundle's training
split, before the GAN trains; the 84 features of its F6 layer), or the classifier of a finished
run (task option ``judge=RUN``, trained on the same data set). This is **not** the Inception FID of
Heusel et al. 2017: numbers are comparable only between runs judged by the same classifier. A resumed run trains its judge again: the same on a
CPU with the same number of threads. For a conditional GAN the judge's accuracy on
generated digits, overall and per class, says whether the generator draws the class it is asked for.

**Selection** reads the validation split: after every epoch, the Fréchet distance between the
judge's features of the val images and of as many generated images (z from a fixed seed, so every
epoch is measured on the same draws) is the monitor ``fd``, lower is better. The test split gives
``test_fd`` once, at the end, beside ``test_fd_real``: the same measure between the test digits and
as many real training digits, the floor a perfect generator would reach.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab import atomic
from cnnlab.data.bundle import DataBundle
from cnnlab.errors import ConfigError
from cnnlab.training import distributed as D
from cnnlab.training.frechet import feature_sums, frechet_distance, gaussian_from_sums
from cnnlab.training.tasks import Task, register_task

__all__ = ["GANTask", "GANReport", "is_gan", "gan_samples", "gan_interpolation", "interpolate_run", "train_judge"]

EVAL_SEED = 1234  # the z of every evaluation: the same draws each epoch
JUDGE_MODEL = "lenet5_relu"  # learns from its first epoch (the scaled-tanh lenet5 starts slower)
JUDGE_RECIPE = "lenet"


def is_gan(model: nn.Module) -> bool:
    m = getattr(model, "module", model)
    return all(callable(getattr(m, a, None)) for a in ("generate", "score", "sample_latent"))


def _penultimate(model: nn.Module, x: Tensor) -> Tensor:
    """The input of ``model``'s output layer (its ``get_classifier()``) for the batch x, flattened."""
    seen: list[Tensor] = []
    handle = model.get_classifier().register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[-1].flatten(1)


def train_judge(data: DataBundle, *, epochs: int) -> tuple[nn.Module, str]:
    """LeNet-5 (ReLU) trained on ``data.train`` with the lenet recipe for ``epochs`` epochs (seed 0, fp32, no
    run folder), and a description with its val accuracy."""
    from cnnlab.models.registry import create_model
    from cnnlab.training.engine import fit
    from cnnlab.training.spec import TrainSpec

    # the GAN's own random stream is left as it was; gradients on also when called under no_grad
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        judge = create_model(JUDGE_MODEL, num_classes=data.num_classes, in_chans=data.input_size[0])
        # deterministic algorithms stay as the GAN's run set them
        result = fit(judge, data, TrainSpec(model=JUDGE_MODEL, recipe=JUDGE_RECIPE, epochs=epochs, seed=0,
                                            precision="fp32"), progress=False)
    return result.model.eval(), (f"{JUDGE_MODEL} trained here ({JUDGE_RECIPE} recipe, {epochs} epochs, seed 0; "
                                 f"val accuracy {result.val_acc:.4f})")


def _judge_from_run(run: str, data: DataBundle) -> tuple[nn.Module, str]:
    from cnnlab.training.rundir import load_run_model

    loaded = load_run_model(run)
    cfg = loaded.config or {}
    trained_on = (cfg.get("data") or {}).get("name")
    if trained_on != data.name:
        raise ConfigError(f"judge={run}: the judge must be trained on the GAN's data ({data.name}), it was "
                          f"trained on {trained_on}")
    if (cfg.get("task") or {}).get("name", "classification") != "classification" or \
            not callable(getattr(loaded.model, "get_classifier", None)):
        raise ConfigError(f"judge={run}: {loaded.name} is not a cnnlab classifier")
    from cnnlab.training.engine import evaluate

    acc = evaluate(loaded.model, data.val, precision="fp32")["acc"]
    return loaded.model.eval(), f"{loaded.name} of the run {run} (val accuracy {acc:.4f})"


@register_task("gan")
class GANTask(Task):
    """Adversarial training of a ``DCGAN`` (see the module docstring); metrics ``loss`` (D's + G's),
    ``d_loss``, ``g_loss``, ``d_real``/``d_fake`` (D's mean probability of "real" on real and on generated images), ``fd``
    (val and test) and for a conditional GAN ``judge_acc`` and ``judge_acc_<class>``."""

    name = "gan"
    monitor = "fd"
    mode = "min"
    HEAD = ("d_loss", "g_loss", "d_real", "d_fake", "count")
    metrics = (("fd", "Frechet distance (judge)", ""), ("d_loss", "discriminator loss", ""),
               ("g_loss", "generator loss", ""))

    def __init__(self, *, judge: str | None = None, judge_epochs: int = 5) -> None:
        if judge is not None and (not isinstance(judge, str) or not judge):
            raise ConfigError(f"gan task: judge must be the folder of a finished classifier run, got {judge!r}")
        if isinstance(judge_epochs, bool) or not isinstance(judge_epochs, int) or not 1 <= judge_epochs <= 1000:
            raise ConfigError(f"gan task: judge_epochs must be an integer in 1..1000, got {judge_epochs!r}")
        self.judge_run, self.judge_epochs = judge, judge_epochs
        self.judge: nn.Module | None = None
        self.judge_note = ""
        self.dim = 0
        self.num_classes = 0
        self.conditional = False
        self.stat_names = self.HEAD

    # ------------------------------------------------------------------ set-up

    def setup(self, data: DataBundle) -> None:
        if data.train.y.ndim != 1:
            raise ConfigError(f"the gan task needs an image classification data set; {data.name} has labels of "
                              f"shape {tuple(data.train.y.shape[1:])}")
        self.data = data
        c = data.input_size[0]
        self.mean = torch.tensor(data.mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(data.std, dtype=torch.float32).view(1, c, 1, 1)
        self.num_classes = data.num_classes
        self.class_keys = tuple(re.sub(r"\W+", "_", str(n)).strip("_") or str(i)
                                for i, n in enumerate(data.class_names))

    def _make_judge(self, data: DataBundle) -> None:
        if self.judge_run is not None:
            self.judge, self.judge_note = _judge_from_run(self.judge_run, data)
        else:
            self.judge, self.judge_note = train_judge(data, epochs=self.judge_epochs)
        for p in self.judge.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            self.dim = _penultimate(self.judge, data.val.x[:2]).shape[1]

    def _set_stat_names(self) -> None:
        d = self.dim
        stats = [f"{s}_{i}" for s in ("n", "f", "ff") for i in range({"n": 1, "f": d, "ff": d * d}[s])]
        names = list(self.HEAD) + [f"real_{s}" for s in stats] + [f"fake_{s}" for s in stats]
        if self.conditional:
            names += [f"hits_{k}" for k in range(self.num_classes)] + [f"drawn_{k}" for k in range(self.num_classes)]
        self.stat_names = tuple(names)

    def check(self, model: nn.Module, data: DataBundle) -> None:
        name = getattr(model, "cnnlab_name", None) or type(model).__name__
        if not is_gan(model):
            raise ConfigError(f"the gan task needs a GAN (generate, score, sample_latent); {name} is not one "
                              "(try dcgan or cdcgan)")
        if D.current().enabled:
            raise ConfigError("the gan task trains in one process (its two networks' updates are not wrapped in DDP)")
        if tuple(model.image_shape) != tuple(data.input_size):
            raise ConfigError(f"{name} draws images of {tuple(model.image_shape)} but {data.name} has "
                              f"{tuple(data.input_size)} (--model-set image_size=...)")
        if model.conditional and model.num_classes != data.num_classes:
            raise ConfigError(f"{name} is conditioned on {model.num_classes} classes, "
                              f"{data.name} has {data.num_classes}")
        self._ready(model)  # after the checks above: a wrong model fails before the judge trains

    def _ready(self, model: nn.Module) -> None:
        """The judge (trained once) and the sums' layout for ``model`` (conditional or not)."""
        if self.judge is None:
            self._make_judge(self.data)
        self.conditional = bool(getattr(model, "module", model).conditional)
        self._set_stat_names()

    def configure(self, recipe: Any) -> None:
        if getattr(recipe, "l1", 0):
            raise ConfigError("the gan task takes no L1 penalty (--l1): its two losses are its own")

    def optimizers(self, model: nn.Module, make) -> list[torch.optim.Optimizer]:
        """The discriminator's optimiser, then the generator's (both the recipe's)."""
        return [make(model.discriminator), make(model.generator)]

    def describe(self) -> dict:
        return {**super().describe(), "judge": self.judge_note, "judge_features": self.dim,
                "fd": "Frechet distance of the judge's penultimate features (not the Inception FID)",
                "generator_loss": "non-saturating, -log D(G(z))", "images": "[-1, 1] (tanh)"}

    # ------------------------------------------------------------------ images

    def to_gan(self, x: Tensor) -> Tensor:
        """The bundle's normalised images -> [-1, 1]."""
        return (x.float() * self.std.to(x.device) + self.mean.to(x.device)).clamp(0, 1) * 2 - 1

    def to_judge(self, g: Tensor) -> Tensor:
        """Generated [-1, 1] images -> the bundle's normalisation (what the judge was trained on)."""
        return ((g.float() + 1) / 2 - self.mean.to(g.device)) / self.std.to(g.device)

    # ------------------------------------------------------------------ training

    def update(self, trainer: Any, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        model = trainer.model
        opt_d, opt_g = trainer.optimizers
        real = self.to_gan(x)
        labels = y if self.conditional else None
        z = model.sample_latent(len(x), device=x.device)  # the global generator: checkpointed with the run
        with trainer.autocast():
            fake = model.generate(z, labels)
            s_real, s_fake = model.score(real, labels).float(), model.score(fake.detach(), labels).float()
        d_loss = (F.binary_cross_entropy_with_logits(s_real, torch.ones_like(s_real))
                  + F.binary_cross_entropy_with_logits(s_fake, torch.zeros_like(s_fake)))
        d_value = trainer.apply(d_loss, opt_d)
        with trainer.autocast():
            s_gen = model.score(fake, labels).float()  # D after its step, as in Algorithm 1
        g_loss = F.binary_cross_entropy_with_logits(s_gen, torch.ones_like(s_gen))
        g_value = trainer.apply(g_loss, opt_g)
        sums = self.zeros(x.device)
        n = len(x)
        sums[:5] = torch.tensor([d_value * n, g_value * n, float(torch.sigmoid(s_real.detach()).sum()),
                                 float(torch.sigmoid(s_fake.detach()).sum()), float(n)], dtype=torch.float64)
        return d_value + g_value, sums

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        raise ConfigError("the gan task makes its own updates (GANTask.update); it has no single loss")

    # ------------------------------------------------------------------ evaluation

    def split_sums(self, model: nn.Module, x_all: Tensor, y_all: Tensor, **kwargs: Any) -> Tensor:
        self._ready(model)  # `cnnlab eval` evaluates without a Trainer's check
        self._eval_gen = torch.Generator().manual_seed(EVAL_SEED)  # the same z every evaluation
        return super().split_sums(model, x_all, y_all, **kwargs)

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        labels = y if self.conditional else None
        real = self.to_gan(x)
        fake = model.generate(model.sample_latent(len(x), generator=self._eval_gen, device=x.device), labels)
        s_real, s_fake = model.score(real, labels).float(), model.score(fake, labels).float()
        d_loss = (F.binary_cross_entropy_with_logits(s_real, torch.ones_like(s_real), reduction="sum")
                  + F.binary_cross_entropy_with_logits(s_fake, torch.zeros_like(s_fake), reduction="sum"))
        g_loss = F.binary_cross_entropy_with_logits(s_fake, torch.ones_like(s_fake), reduction="sum")
        head = torch.stack([d_loss.double(), g_loss.double(), torch.sigmoid(s_real).double().sum(),
                            torch.sigmoid(s_fake).double().sum(), torch.tensor(float(len(x)), dtype=torch.float64,
                                                                               device=x.device)])
        judge = self.judge.to(x.device)
        with torch.autocast(x.device.type, enabled=False):  # the features in fp32 whatever the run's precision
            f_real = _penultimate(judge, x.float())
            f_fake = _penultimate(judge, self.to_judge(fake))
            parts = [head, feature_sums(f_real), feature_sums(f_fake)]
            if self.conditional:
                pred = judge(self.to_judge(fake)).argmax(1)
                k = self.num_classes
                parts += [torch.bincount(y[pred == y], minlength=k)[:k].double(),  # hits per class
                          torch.bincount(y, minlength=k)[:k].double()]  # digits drawn per class
        return torch.cat([p.to(x.device) for p in parts])

    def summarize(self, sums: Tensor) -> dict[str, float]:
        s = sums.detach().cpu().double().numpy()
        d_loss, g_loss, d_real, d_fake, n = (float(v) for v in s[:5])
        n = max(n, 1.0)
        out = {"loss": (d_loss + g_loss) / n, "d_loss": d_loss / n, "g_loss": g_loss / n, "d_real": d_real / n,
               "d_fake": d_fake / n}
        size = 1 + self.dim + self.dim * self.dim
        real, fake = s[5 : 5 + size], s[5 + size : 5 + 2 * size]
        if len(fake) == size and real[0] >= 2 and fake[0] >= 2:
            mu1, c1, _ = gaussian_from_sums(real, self.dim)
            mu2, c2, _ = gaussian_from_sums(fake, self.dim)
            out["fd"] = frechet_distance(mu1, c1, mu2, c2)
        if self.conditional and len(s) == 5 + 2 * size + 2 * self.num_classes:
            hits, drawn = s[5 + 2 * size :][: self.num_classes], s[5 + 2 * size :][self.num_classes :]
            if drawn.sum() > 0:
                out["judge_acc"] = float(hits.sum() / drawn.sum())
                for key, h, m in zip(self.class_keys, hits, drawn):
                    out[f"judge_acc_{key}"] = float(h / m) if m else float("nan")
        return out

    @torch.no_grad()
    def real_floor(self, data: DataBundle) -> float:
        """The Fréchet distance between the test digits and as many training digits (evenly spaced over
        the split): what a generator that drew real digits would score, sampling noise included. The
        judge was trained on the training digits, which may raise it a little."""
        judge = self.judge.eval()
        n = min(len(data.test), len(data.train))
        picks = torch.linspace(0, len(data.train) - 1, n).long()
        sums = []
        for x in (data.test.x, data.train.x[picks]):
            with torch.autocast("cpu", enabled=False):
                parts = [feature_sums(_penultimate(judge.cpu(), x[s : s + 500].float())) for s in range(0, n, 500)]
            sums.append(torch.stack(parts).sum(0))
        (mu1, c1, _), (mu2, c2, _) = (gaussian_from_sums(s, self.dim) for s in sums)
        return frechet_distance(mu1, c1, mu2, c2)

    def callbacks(self, out_dir: Path | None) -> list:
        return [GANReport(out_dir)]


# ---------------------------------------------------------------------------------------------
# Pictures: samples, a latent interpolation, one row per class
# ---------------------------------------------------------------------------------------------


def _pixels(images: Tensor) -> np.ndarray:
    return ((images.float() + 1) / 2).clamp(0, 1).cpu().numpy()


@torch.no_grad()
def gan_samples(model: nn.Module, n: int, *, seed: int = 0, labels: Tensor | None = None) -> np.ndarray:
    """``n`` generated images (pixels in [0, 1]) from z drawn with ``seed``; a conditional model draws
    ``labels`` (default: the classes in turn)."""
    model = getattr(model, "module", model).eval()
    device = next(model.parameters()).device
    z = model.sample_latent(n, generator=torch.Generator().manual_seed(seed), device=device)
    if model.conditional and labels is None:
        labels = torch.arange(n) % model.num_classes
    return _pixels(model.generate(z, None if labels is None else labels.to(device)))


@torch.no_grad()
def gan_interpolation(model: nn.Module, *, rows: int = 8, steps: int = 10, seed: int = 0) -> np.ndarray:
    """``rows`` lines of ``steps`` images decoded from (1 - t) z_a + t z_b, t = 0 ... 1, each between two
    draws (Radford et al. 2016 §6.1, "walking in the latent space"); a conditional model keeps one
    class per row. (rows * steps, C, H, W), pixels in [0, 1]."""
    model = getattr(model, "module", model).eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    ends = model.sample_latent(2 * rows, generator=gen).view(rows, 2, -1)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    z = ((1 - t) * ends[:, :1] + t * ends[:, 1:]).reshape(rows * steps, -1).to(device)
    labels = (torch.arange(rows) % model.num_classes).repeat_interleave(steps).to(device) if model.conditional else None
    return _pixels(model.generate(z, labels))


class GANReport:
    """On fit end, with a run folder: ``generative.npz`` with the arrays of the pictures (samples, an
    interpolation, for a conditional GAN one row per class), drawn by :mod:`cnnlab.viz.run_pictures`."""

    def __init__(self, out_dir: Path | None, *, seed: int = 0) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.seed = seed

    def on_fit_end(self, trainer, result) -> None:
        task, data = trainer.task, trainer.data
        if trainer.main and task.judge is not None and len(data.test) >= 2:  # the measure between real digits
            result.test["fd_real"] = task.real_floor(data)
        if self.out_dir is None or not trainer.main:
            return
        model = result.model
        arrays = {"samples": gan_samples(model, 64, seed=self.seed),
                  "latent_walk": gan_interpolation(model, seed=self.seed), "latent_walk_steps": np.array(10)}
        if model.conditional:
            k = model.num_classes
            arrays["class_rows"] = gan_samples(model, 10 * k, seed=self.seed,
                                               labels=torch.arange(k).repeat_interleave(10))
        name = type(model).__name__ + (" (conditional)" if model.conditional else "")
        atomic.write_npz(self.out_dir / "generative.npz", **arrays, title=np.array(f"{name} on {data.name}"))


def interpolate_run(run_dir: str | Path, *, rows: int = 8, steps: int = 10,
                    seed: int = 0) -> tuple[np.ndarray, str] | None:
    """A latent interpolation from the GAN of a finished run (pixels in [0, 1]) and a title; None when the
    run is not a GAN."""
    from cnnlab.training.rundir import load_run_model

    loaded = load_run_model(run_dir)
    if not is_gan(loaded.model):
        return None
    data = (loaded.config or {}).get("data") or {}
    return (gan_interpolation(loaded.model, rows=rows, steps=steps, seed=seed),
            f"{loaded.name} on {data.get('name', '?')}: z interpolated between pairs of draws (seed {seed})")
