"""The VAE's objective and likelihood estimates, as plain functions of a model and a batch.

A model here is any module with the interface of :class:`cnnlab.models.zoo.autoencoders.VAE`:
``encode(x) -> (mu, logvar)`` (q(z|x) = N(mu, diag exp(logvar))), ``decode(z) -> logits`` and
``log_likelihood(target, logits) -> (N,)`` (log p(target|z) summed over pixels); the prior is
p(z) = N(0, I). ``x`` is what the encoder reads (normalised images), ``target`` what the decoder's
likelihood scores (pixels in [0, 1]). Everything is in nats per image.

- :func:`gaussian_kl`: KL(q(z|x) || p(z)) in closed form (Kingma & Welling 2014, Appendix B).
- :func:`elbo_terms`: the negative ELBO's two parts, reconstruction -E_q[log p(x|z)] and KL.
- :func:`importance_sampled_nll`: -log p(x) estimated with K importance samples from q(z|x)
  (Burda, Grosse & Salakhutdinov 2016, eq. 8): -log (1/K) sum_k p(x, z_k) / q(z_k|x). It is a
  lower bound on log p(x) like the ELBO (K = 1), never looser in expectation, and tightens as K
  grows (their Theorem 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["ELBOTerms", "gaussian_kl", "gaussian_log_density", "elbo_terms", "sample_elbo",
           "importance_sampled_nll", "evaluate_vae"]  # fmt: skip

_LOG_2PI = math.log(2 * math.pi)


class ELBOTerms(NamedTuple):
    """Per-image parts of the negative ELBO: ``recon + kl`` (``recon + beta * kl`` is beta-VAE's loss)."""

    recon: Tensor  # (N,) -log p(x|z) at a sample z ~ q(z|x): an unbiased estimate of -E_q[log p(x|z)]
    kl: Tensor  # (N,) KL(q(z|x) || N(0, I)), exact

    @property
    def neg_elbo(self) -> Tensor:
        return self.recon + self.kl


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row: -1/2 sum_j (1 + log s_j^2 - mu_j^2 - s_j^2)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def gaussian_log_density(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last axis."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def elbo_terms(model: nn.Module, x: Tensor, target: Tensor) -> ELBOTerms:
    """The negative ELBO's parts with one reparameterised sample, differentiable (for training).

    Uses ``model.forward_train`` (its sample comes from the global generator).
    """
    out = model.forward_train(x)
    recon = -model.log_likelihood(target, out.logits)
    return ELBOTerms(recon, gaussian_kl(out.mu.float(), out.logvar.float()))


def _samples(mu: Tensor, logvar: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """k draws from q(z|x) for each row: (k, N, D)."""
    eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


@torch.no_grad()
def sample_elbo(model: nn.Module, x: Tensor, target: Tensor, *, generator: torch.Generator | None = None) -> ELBOTerms:
    """As :func:`elbo_terms`, without gradients and with the sample drawn from ``generator``."""
    mu, logvar = (t.float() for t in model.encode(x))
    z = _samples(mu, logvar, 1, generator)[0]
    return ELBOTerms(-model.log_likelihood(target, model.decode(z)), gaussian_kl(mu, logvar))


@torch.no_grad()
def importance_sampled_nll(
    model: nn.Module, x: Tensor, target: Tensor, *, samples: int = 1000, chunk: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """-log p(x) per image (N,), estimated with ``samples`` importance samples from q(z|x).

    The samples are decoded ``chunk`` at a time (``chunk * N`` images per decoder call); the
    log-weights log p(x|z_k) + log p(z_k) - log q(z_k|x) are combined by log-sum-exp.
    """
    if samples < 1 or chunk < 1:
        raise ValueError(f"samples and chunk must be >= 1, got {samples} and {chunk}")
    mu, logvar = (t.float() for t in model.encode(x))
    n = mu.shape[0]
    log_w = []
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        z = _samples(mu, logvar, k, generator)  # k x N x D
        logits = model.decode(z.reshape(k * n, -1))  # kN x C x H x W
        rep = target.unsqueeze(0).expand(k, *target.shape).reshape(k * n, *target.shape[1:])
        log_px = model.log_likelihood(rep, logits).view(k, n)
        log_w.append(log_px + gaussian_log_density(z) - gaussian_log_density(z, mu, logvar))
    return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(samples))


@torch.no_grad()
def evaluate_vae(
    model: nn.Module, x: Tensor, target: Tensor, *, samples: int = 1000, batch_size: int = 100,
    chunk: int = 100, seed: int = 0, progress: bool = False,
) -> dict[str, float]:
    """Mean negative ELBO (recon, KL) and importance-sampled NLL over a split, nats per image.

    ``samples=0`` skips the importance-sampled estimate. ``model`` is put in eval mode.
    """
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    recon = kl = nll = 0.0
    starts = range(0, len(x), batch_size)
    for start in tqdm(starts, desc="ELBO / importance sampling", disable=not progress, leave=False):
        xb = x[start : start + batch_size].to(device)
        tb = target[start : start + batch_size].to(device)
        terms = sample_elbo(model, xb, tb, generator=generator)
        recon += float(terms.recon.double().sum())
        kl += float(terms.kl.double().sum())
        if samples:
            nll += float(importance_sampled_nll(model, xb, tb, samples=samples, chunk=chunk,
                                                generator=generator).double().sum())
    n = max(len(x), 1)
    out = {"recon": recon / n, "kl": kl / n, "neg_elbo": (recon + kl) / n}
    if samples:
        out["nll_is"] = nll / n
        out["is_samples"] = samples
    return out
