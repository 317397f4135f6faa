"""The VAE's objective and likelihood estimates against closed forms and known densities.

- the KL term against torch.distributions and hand values; the decoders' log-likelihoods against
  torch.distributions;
- importance sampling (Burda et al. 2016) on a trained tiny VAE: never worse than the ELBO, and
  tighter with more samples;
- a VAE with a 1-d latent on data from a linear-Gaussian model (probabilistic PCA with one
  component, Tipping & Bishop 1999), whose marginal likelihood is closed-form: the estimate equals
  the trained model's exact marginal, and the true density's, within tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from cnnlab import create_model
from cnnlab.training.elbo import elbo_terms, gaussian_kl, importance_sampled_nll, sample_elbo


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_kl_matches_torch_distributions_and_hand_values():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)
    q = D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = D.Independent(D.Normal(torch.zeros(5), torch.ones(5)), 1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), D.kl_divergence(q, p), rtol=1e-5, atol=1e-5)
    # q = p gives 0; a unit shift of the mean in one dimension gives 1/2; sigma^2 = e in one dimension
    # gives (e - 1 - 1) / 2.
    assert float(gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3))) == 0.0
    assert float(gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))) == pytest.approx(0.5)
    assert float(gaussian_kl(torch.zeros(1, 1), torch.ones(1, 1))) == pytest.approx((math.e - 2) / 2)


def test_decoder_log_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 28, 28, generator=g)
    binary = (torch.rand(3, 1, 28, 28, generator=g) > 0.5).float()
    vae = create_model("vae_mlp", latent_dim=2)
    expected = D.Bernoulli(logits=logits).log_prob(binary).flatten(1).sum(1)
    torch.testing.assert_close(vae.log_likelihood(binary, logits), expected, rtol=1e-5, atol=1e-3)
    gauss = create_model("vae_conv", likelihood="gaussian")
    with torch.no_grad():
        gauss.decoder_logvar.fill_(math.log(0.3**2))
    pixels = torch.rand(3, 1, 28, 28, generator=g)
    expected = D.Normal(torch.sigmoid(logits), 0.3).log_prob(pixels).flatten(1).sum(1)
    torch.testing.assert_close(gauss.log_likelihood(pixels, logits).detach(), expected, rtol=1e-5, atol=1e-3)


def _train(model, x, target, *, steps: int, lr: float, batch: int | None = None, seed: int = 0) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        if batch is None:
            xb, tb = x, target
        else:
            idx = torch.randint(0, len(x), (batch,))
            xb, tb = x[idx], target[idx]
        loss = elbo_terms(model, xb, tb).neg_elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def trained_digits_vae():
    """A tiny MLP VAE trained for a few hundred updates on scikit-learn's 8x8 digits (pixels in [0, 1])."""
    from sklearn.datasets import load_digits

    grey = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8
    pixels = (grey > 0.5).float()  # binarised: the Bernoulli likelihood is then a proper probability
    x = (grey - grey.mean()) / grey.std()
    vae = create_model("vae_mlp", hidden=(64,), latent_dim=8, image_size=(8, 8))
    _train(vae, x[:1500], pixels[:1500], steps=300, lr=3e-3, batch=100)
    return vae, x[1500:], pixels[1500:]


def test_importance_sampling_is_never_worse_than_the_elbo_and_tightens(trained_digits_vae):
    vae, x, pixels = trained_digits_vae
    g = torch.Generator().manual_seed(0)
    neg_elbo = torch.stack([sample_elbo(vae, x, pixels, generator=g).neg_elbo for _ in range(200)]).mean(0)
    ks = (1, 5, 50, 500)
    nll = {k: importance_sampled_nll(vae, x, pixels, samples=k, chunk=100, generator=g) for k in ks}
    means = [float(nll[k].mean()) for k in ks]
    print("neg ELBO", float(neg_elbo.mean()), "IS NLL for K =", ks, means)
    # K = 1 is the ELBO itself (one sample): equal on average.
    assert means[0] == pytest.approx(float(neg_elbo.mean()), abs=0.2)
    # Tighter with more samples (Burda et al. 2016, Theorem 1), by margins beyond the noise where the
    # gain is large; from 50 to 500 the gain is small and the check is "not worse beyond the noise".
    assert means[0] > means[1] + 0.1 and means[1] > means[2] + 0.01 and means[3] < means[2] + 0.01, means
    # Never worse than the ELBO: per image (the ELBO averaged over 200 draws) up to sampling noise,
    # and on average by a clear margin.
    gap = neg_elbo - nll[500]
    assert float(gap.min()) > -0.3 and float(gap.mean()) > 0.2, (float(gap.min()), float(gap.mean()))


def _is_by_hand(vae, x, target, eps):
    """Burda et al.'s estimator written out with torch.distributions, for given draws eps (K, N, D)."""
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_px = torch.stack([vae.log_likelihood(target, vae.decode(zk)) for zk in z])
        log_pz = D.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = D.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
        return -(torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(len(eps)))


def test_importance_sampling_matches_the_estimator_by_hand_in_one_pass_and_in_chunks():
    vae = create_model("vae_mlp", hidden=(16,), latent_dim=3, image_size=(8, 8)).eval()
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    target = torch.sigmoid(x)
    one = importance_sampled_nll(vae, x, target, samples=60, chunk=60, generator=torch.Generator().manual_seed(5))
    eps = torch.randn((60, 7, 3), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(one, _is_by_hand(vae, x, target, eps), rtol=1e-5, atol=1e-4)
    # 60 samples decoded 25, 25 and 10 at a time: the generator is read chunk by chunk.
    chunked = importance_sampled_nll(vae, x, target, samples=60, chunk=25, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    eps = torch.cat([torch.randn((k, 7, 3), generator=g) for k in (25, 25, 10)])
    torch.testing.assert_close(chunked, _is_by_hand(vae, x, target, eps), rtol=1e-5, atol=1e-4)


def test_vae_with_1d_latent_recovers_a_known_density():
    """x = w z + b + noise, z ~ N(0, 1), noise ~ N(0, s^2 I): x ~ N(b, w w^T + s^2 I) exactly.

    vae_mlp with no hidden layer, a 1-d latent and the Gaussian likelihood with an identity output is
    this model family (its variance is one learned s^2 per channel, here one channel); its
    encoder, linear in x with a constant variance, can represent the exact posterior, so at the
    optimum the ELBO is the log-likelihood (and the maximum-likelihood fit is within sampling error
    of the true density).
    """
    d, n = 6, 4000
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([1.5, -1.0, 0.8, 2.0, -0.5, 1.2])
    b = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.5, -0.4])
    s = 0.4
    z = torch.randn(2 * n, 1, generator=g)
    data = z * w + b + s * torch.randn(2 * n, d, generator=g)
    true = D.MultivariateNormal(b, covariance_matrix=torch.outer(w, w) + s**2 * torch.eye(d))
    images = data.view(-1, 1, 1, d)  # the zoo's VAEs read images: 1 x 1 x d
    train, test = images[:n], images[n:]
    vae = create_model("vae_mlp", hidden=(), latent_dim=1, likelihood="gaussian", output="identity",
                       image_size=(1, d))
    _train(vae, train, train, steps=1500, lr=0.05)

    true_nll = float(-true.log_prob(data[n:]).mean())
    # The trained model's own exact marginal: N(c, W W^T + s'^2 I) from its linear decoder.
    with torch.no_grad():
        W = vae.decoder.out.weight.view(d)
        c = vae.decoder.out.bias.view(d)
        s2 = float(vae.decoder_logvar.exp())
        model_marginal = D.MultivariateNormal(c, covariance_matrix=torch.outer(W, W) + s2 * torch.eye(d))
        exact_nll = float(-model_marginal.log_prob(data[n:]).mean())
        nll_is = float(importance_sampled_nll(vae, test, test, samples=200, generator=g).mean())
        neg_elbo = float(sample_elbo(vae, test, test, generator=g).neg_elbo.mean())
    assert nll_is == pytest.approx(exact_nll, abs=0.01), (nll_is, exact_nll)
    assert nll_is == pytest.approx(true_nll, abs=0.05), (nll_is, true_nll)
    assert neg_elbo == pytest.approx(true_nll, abs=0.1), (neg_elbo, true_nll)
    assert s2 == pytest.approx(s**2, rel=0.1)
