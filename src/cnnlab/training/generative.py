"""Training autoencoders and VAEs with the engine: the "reconstruction" and "vae" tasks, and the
end-of-run measurement and pictures of a generative run.

Both tasks score the model's reconstruction against the **un-normalised** image (pixels in [0, 1]):
the bundle holds normalised images, and ``setup(data)`` reads its mean and std to undo that.

- :class:`ReconstructionTask` ("reconstruction"): mean squared error on pixels (``loss="mse"``) or
  the per-pixel binary cross-entropy (``loss="bce"``); metrics ``loss`` and ``mse`` (per pixel);
  selection on the validation loss, lower is better.
- :class:`VAETask` ("vae"): the negative ELBO, reconstruction + beta * KL (Kingma & Welling 2014;
  Higgins et al. 2017 for beta != 1); metrics ``neg_elbo`` (always with beta = 1), ``recon``, ``kl``
  and ``loss`` (the beta-weighted objective); selection on the validation neg_elbo. All in nats per image.
- :class:`GenerativeReport`, a callback the tasks bring: at the end of a run, on the test split and
  the selected weights, the importance-sampled negative log-likelihood (Burda et al. 2016, K = 1000
  samples by default) goes into ``results.json`` as ``test_nll_is`` with ``test_elbo``, and the
  arrays of the pictures (reconstructions, prior samples, interpolations, and for a 2-d latent the
  test codes and the decoded latent grid) are saved to ``generative.npz``, which
  :mod:`cnnlab.viz.run_pictures` draws as PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab import atomic
from cnnlab.data.bundle import DataBundle
from cnnlab.errors import ConfigError
from cnnlab.training.elbo import ELBOTerms, elbo_terms, evaluate_vae, sample_elbo
from cnnlab.training.tasks import Task, register_task

__all__ = ["ReconstructionTask", "VAETask", "GenerativeReport", "generative_arrays", "prior_samples", "sample_run",
           "unwrap", "is_vae"]  # fmt: skip


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / wrappers (``.module``)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def is_vae(model: nn.Module) -> bool:
    m = unwrap(model)
    return all(callable(getattr(m, a, None)) for a in ("encode", "decode", "log_likelihood", "decode_mean"))


class _PixelTask(Task):
    """Shared: the [0, 1] target from the normalised input, and the probe of the model's output."""

    mean: Tensor
    std: Tensor
    binarize: bool = False

    def setup(self, data: DataBundle) -> None:
        c = data.input_size[0]
        self.mean = torch.tensor(data.mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(data.std, dtype=torch.float32).view(1, c, 1, 1)

    def target(self, x: Tensor) -> Tensor:
        """The image in [0, 1] that the normalised ``x`` came from (thresholded at 0.5 with ``binarize``)."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        pixels = (x.float() * std + mean).clamp(0.0, 1.0)
        return (pixels > 0.5).float() if self.binarize else pixels

    def check(self, model: nn.Module, data: DataBundle) -> None:
        out, name = self.probe(model, data)
        x = data.test.x[:2]
        if not isinstance(out, Tensor) or out.shape != x.shape:
            shape = tuple(out.shape[1:]) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(f"the {self.name} task needs a model that outputs an image of its input's shape "
                              f"{tuple(x.shape[1:])}; {name} gives {shape} (a classifier?)")


@register_task("reconstruction")
class ReconstructionTask(_PixelTask):
    """Reconstruct the input: MSE or binary cross-entropy against its [0, 1] pixels."""

    name = "reconstruction"
    monitor = "loss"
    mode = "min"
    stat_names = ("loss", "sq_err", "pixels", "count")
    metrics = (("mse", "reconstruction MSE (pixels in [0, 1])", ""), ("loss", "loss", ""))

    def __init__(self, *, loss: str = "mse") -> None:
        if loss not in ("mse", "bce"):
            raise ConfigError(f"reconstruction task: loss must be 'mse' or 'bce', got {loss!r}")
        self.kind = loss

    def _logits(self, out: Any) -> Tensor:
        return (out.logits if hasattr(out, "logits") else torch.logit(out.clamp(1e-6, 1 - 1e-6))).float()

    def _sums(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        pixels = torch.sigmoid(logits)
        sq = F.mse_loss(pixels, target, reduction="sum")
        per_pixel = sq / target.numel() if self.kind == "mse" else \
            F.binary_cross_entropy_with_logits(logits, target, reduction="mean")
        n = target.shape[0]
        sums = torch.stack([per_pixel.detach().double() * n, sq.detach().double(),
                            torch.tensor(float(target.numel()), dtype=torch.float64, device=target.device),
                            torch.tensor(float(n), dtype=torch.float64, device=target.device)])
        return per_pixel, sums

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._sums(self._logits(out), self.target(x))

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        out = model.forward_train(x) if hasattr(model, "forward_train") else model(x)
        return self._sums(self._logits(out), self.target(x))[1]

    def summarize(self, sums: Tensor) -> dict[str, float]:
        loss, sq, pixels, n = (float(v) for v in sums.cpu())
        return {"loss": loss / max(n, 1.0), "mse": sq / max(pixels, 1.0)}

    def describe(self) -> dict:
        return {**super().describe(), "loss": self.kind, "target": "pixels in [0, 1]"}

    def callbacks(self, out_dir: Path | None) -> list:
        return [GenerativeReport(out_dir, samples=0)]


@register_task("vae")
class VAETask(_PixelTask):
    """The negative ELBO of a VAE, reconstruction + beta * KL, in nats per image."""

    name = "vae"
    monitor = "neg_elbo"
    mode = "min"
    stat_names = ("recon", "kl", "weighted", "count")
    metrics = (("neg_elbo", "negative ELBO (nats)", ""), ("nll_is", "importance-sampled NLL (nats)", ""),
               ("kl", "KL (nats)", ""))

    def __init__(self, *, beta: float | None = None, is_samples: int = 1000, binarize: bool = False) -> None:
        if beta is not None and (isinstance(beta, bool) or not float(beta) >= 0):
            raise ConfigError(f"vae task: beta must be a number >= 0, got {beta!r}")
        if isinstance(is_samples, bool) or not isinstance(is_samples, int) or is_samples < 0:
            raise ConfigError(f"vae task: is_samples must be an integer >= 0, got {is_samples!r}")
        self.beta_option = beta
        self.beta = 1.0 if beta is None else float(beta)
        self.is_samples = is_samples
        # binarize: targets (pixels > 0.5), so that the Bernoulli likelihood is a probability of the
        # image (the papers model binarised MNIST; a fixed threshold, not Burda et al.'s resampling).
        if not isinstance(binarize, bool):
            raise ConfigError(f"vae task: binarize must be true or false, got {binarize!r}")
        self.binarize = binarize

    def check(self, model: nn.Module, data: DataBundle) -> None:
        if not is_vae(model):
            raise ConfigError(f"the vae task needs a VAE (encode, decode, log_likelihood); "
                              f"{type(unwrap(model)).__name__} is not one (try vae_mlp or vae_conv)")
        super().check(model, data)
        if self.beta_option is None:
            self.beta = float(getattr(unwrap(model), "beta", 1.0))  # the model's config (--model-set beta=4)

    def forward_train(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> ELBOTerms:
        return elbo_terms(model, x, self.target(x))

    def _sums(self, terms: ELBOTerms) -> Tensor:
        recon, kl = terms.recon.detach().double().sum(), terms.kl.detach().double().sum()
        n = torch.tensor(float(terms.recon.shape[0]), dtype=torch.float64, device=recon.device)
        return torch.stack([recon, kl, recon + self.beta * kl, n])

    def loss(self, out: ELBOTerms, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss = (out.recon + self.beta * out.kl).mean()
        return loss, self._sums(out)

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return self._sums(sample_elbo(model, x, self.target(x)))

    def summarize(self, sums: Tensor) -> dict[str, float]:
        recon, kl, weighted, n = (float(v) for v in sums.cpu())
        n = max(n, 1.0)
        return {"neg_elbo": (recon + kl) / n, "recon": recon / n, "kl": kl / n, "loss": weighted / n}

    def describe(self) -> dict:
        return {**super().describe(), "beta": self.beta, "is_samples": self.is_samples, "binarize": self.binarize,
                "units": "nats per image; target pixels in [0, 1]"}

    def callbacks(self, out_dir: Path | None) -> list:
        return [GenerativeReport(out_dir, samples=self.is_samples)]


# ---------------------------------------------------------------------------------------------
# End of run: test likelihood and the pictures' arrays
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def prior_samples(model: nn.Module, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` images E[x|z], z ~ N(0, I) drawn with ``seed``: (n, C, H, W) in [0, 1]."""
    model = unwrap(model).eval()
    device = next(model.parameters()).device
    z = torch.randn((n, model.latent_dim), generator=torch.Generator().manual_seed(seed)).to(device)
    return model.decode_mean(z).float().clamp(0, 1).cpu().numpy()


def _firsts(y: Tensor, num_classes: int) -> list[int]:
    """The first index of each class, in class order, then the rest."""
    firsts = [int((y == c).nonzero()[0]) for c in range(num_classes) if bool((y == c).any())]
    return firsts + [i for i in range(len(y)) if i not in set(firsts)]


@torch.no_grad()
def generative_arrays(model: nn.Module, data: DataBundle, *, show: int = 10, samples: int = 64, steps: int = 10,
                      grid: int = 15, seed: int = 0) -> dict[str, np.ndarray]:
    """What the pictures show, as arrays (pixels in [0, 1]):

    ``inputs``/``reconstructions`` (one test image per class, then more); for a VAE also ``samples``
    (E[x|z] for z from the prior), ``interpolation`` (decoded points on the line between the
    posterior means of two test digits of different classes, ``steps`` of them), and for a 2-d
    latent ``latent_mu``/``latent_y`` (every test image's posterior mean and class) and ``manifold``
    (a ``grid`` x ``grid`` lattice of z at the standard normal's quantiles, decoded, as K&W Fig. 4).
    """
    model = unwrap(model).eval()
    device = next(model.parameters()).device
    c = data.input_size[0]
    mean = torch.tensor(data.mean).view(1, c, 1, 1)
    std = torch.tensor(data.std).view(1, c, 1, 1)
    order = _firsts(data.test.y, data.num_classes)[:show]
    x = data.test.x[order]
    out: dict[str, np.ndarray] = {
        "inputs": (x * std + mean).clamp(0, 1).numpy(),
        "reconstructions": model(x.to(device)).float().clamp(0, 1).cpu().numpy(),
    }
    if not is_vae(model):
        if getattr(model, "noise", "none") != "none":  # a denoising autoencoder: show what it was given
            torch.manual_seed(seed)
            noisy = model.corrupt(x)
            out["noisy"] = (noisy * std + mean).clamp(0, 1).numpy()
            out["denoised"] = model(noisy.to(device)).float().clamp(0, 1).cpu().numpy()
        return out
    out["samples"] = prior_samples(model, samples, seed=seed)
    a, b = order[0], order[1]  # the first test digits of two classes (0 and 1 on digits)
    mu, _ = model.encode(data.test.x[[a, b]].to(device))
    t = torch.linspace(0, 1, steps, device=device).view(-1, 1)
    out["interpolation"] = model.decode_mean((1 - t) * mu[0] + t * mu[1]).float().clamp(0, 1).cpu().numpy()
    out["interpolation_ends"] = out["inputs"][:2]
    if model.latent_dim == 2:
        mus = [model.encode(data.test.x[s : s + 500].to(device))[0].float().cpu() for s in range(0, len(data.test), 500)]
        out["latent_mu"] = torch.cat(mus).numpy()
        out["latent_y"] = data.test.y.numpy()
        # K&W Fig. 4: "linearly spaced coordinates on the unit square ... transformed through the
        # inverse CDF of the Gaussian".
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / grid, 1 - 0.5 / grid, grid))
        zz = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).view(-1, 2).to(device)
        out["manifold"] = model.decode_mean(zz).float().clamp(0, 1).cpu().numpy()
        out["manifold_z"] = q.numpy()
    return out


def describe_model(model: nn.Module) -> str:
    """A short name for pictures: "VAE (mlp encoder, 20-d latent)", "ConvAutoencoder", ..."""
    m = unwrap(model)
    cfg = getattr(m, "cfg", None)
    if is_vae(m) and cfg is not None:
        return f"VAE ({cfg.encoder} encoder, {cfg.latent_dim}-d latent, {cfg.likelihood})"
    noise = getattr(m, "noise", "none")
    return type(m).__name__ + (f" (denoising, {noise} noise)" if noise != "none" else "")


class GenerativeReport:
    """On fit end: the test likelihood of a VAE (into ``result.test``, so results.json gets
    ``test_elbo`` and ``test_nll_is``) and, with a run folder, ``generative.npz``: the arrays of its
    pictures (which :mod:`cnnlab.viz.run_pictures` draws)."""

    def __init__(self, out_dir: Path | None, *, samples: int = 1000, batch_size: int = 100, seed: int = 0) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.samples, self.batch_size, self.seed = samples, batch_size, seed

    def on_fit_end(self, trainer, result) -> None:
        model, data = result.model, trainer.data
        if is_vae(model):
            task = trainer.task
            target = task.target(data.test.x)
            progress = trainer.progress and trainer.main
            m = evaluate_vae(model, data.test.x, target, samples=self.samples, batch_size=self.batch_size,
                             seed=self.seed, progress=progress)
            result.test["elbo"] = -m["neg_elbo"]
            if self.samples:
                result.test["nll_is"] = m["nll_is"]
                result.test["is_samples"] = self.samples
            if progress:
                line = f"test: ELBO {-m['neg_elbo']:.2f} nats (recon {m['recon']:.2f}, KL {m['kl']:.2f})"
                if self.samples:
                    line += f", importance-sampled NLL {m['nll_is']:.2f} nats (K={self.samples})"
                print(line)
        if self.out_dir is None or not trainer.main:
            return
        arrays = generative_arrays(model, data, seed=self.seed)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # the pictures' title goes with their arrays (cnnlab.viz.run_pictures draws them)
        atomic.write_npz(self.out_dir / "generative.npz", **arrays,
                         title=np.array(f"{describe_model(model)} on {data.name}"))



# ---------------------------------------------------------------------------------------------
# A trained run, again: `cnnlab sample`
# ---------------------------------------------------------------------------------------------


def sample_run(run_dir: str | Path, *, n: int = 64, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` new images from the prior of the VAE or GAN trained in ``run_dir`` (pixels in [0, 1]) and a title."""
    from cnnlab.limits import MAX_SAMPLES, check_seed

    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise ConfigError(f"--n must be an integer in 1..{MAX_SAMPLES:,}, got {n!r}")
    if problem := check_seed(seed, name="--seed"):
        raise ConfigError(problem)
    from cnnlab.training.rundir import load_run_model

    loaded = load_run_model(run_dir)
    model, config, name = loaded.model, loaded.config, loaded.name
    title = f"{name} on {config['data'].get('name', '?')}: {n} samples (seed {seed})"
    from cnnlab.training.gan import gan_samples, is_gan

    if is_gan(model):  # G(z), z ~ N(0, I); a conditional GAN draws the classes in turn
        return gan_samples(model, n, seed=seed), title
    if not is_vae(model):
        raise ConfigError(f"{run_dir}: {name} is not a VAE or a GAN, it has no prior to sample from "
                          "(train vae_mlp, vae_conv, dcgan or cdcgan)")
    return prior_samples(model, n, seed=seed), title
