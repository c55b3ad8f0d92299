"""Numerical checks of the likelihoods and objectives against closed forms, Monte Carlo and quadrature."""

import math

import pytest
import torch
from torch import distributions as D

from vaekit.config import ModelConfig
from vaekit.likelihoods import LIKELIHOODS, make_likelihood
from vaekit.networks import VAEModule
from vaekit.objectives import elbo, gaussian_kl, iwae_bound, reparameterize


def test_analytic_kl_matches_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    kl = gaussian_kl(mu, logvar).sum(-1)
    q = D.Normal(mu, (0.5 * logvar).exp())
    p = D.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(kl, D.kl_divergence(q, p).sum(-1))
    z = reparameterize(mu, logvar, 200_000, g)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(kl, mc, atol=0.03)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_log_prob_matches_torch_distributions(name):
    g = torch.Generator().manual_seed(1)
    lik = make_likelihood(name, sigma=0.7)
    params = torch.randn(5, 6 * lik.params_per_dim, generator=g)
    x = torch.rand(5, 6, generator=g)
    if name == "bernoulli":
        x = x.round()
        ref = D.Bernoulli(logits=params).log_prob(x).sum(-1)
    elif name == "gaussian":
        mu, logvar = params.chunk(2, -1)
        ref = D.Normal(mu, (0.5 * logvar).exp()).log_prob(x).sum(-1)
    elif name == "discretized_logistic":
        x = (x * 255).round() / 255
        x[0, :2] = torch.tensor([0.0, 1.0])  # the two edge bins
        ref = _discretized_logistic_direct(x, params)
    else:
        ref = D.Normal(params, 0.7).log_prob(x).sum(-1)
    torch.testing.assert_close(lik.log_prob(x, params), ref)


def _discretized_logistic_direct(x, params):
    """log P(v) from the logistic CDF in float64: CDF(x + 1/510) - CDF(x - 1/510), tails at the edges."""
    mu, log_s = (p.double() for p in params.chunk(2, -1))
    cdf = lambda t: torch.sigmoid((t - mu) / log_s.exp())  # noqa: E731
    x = x.double()
    upper = torch.where(x > 254.5 / 255, torch.ones_like(x), cdf(x + 0.5 / 255))
    lower = torch.where(x < 0.5 / 255, torch.zeros_like(x), cdf(x - 0.5 / 255))
    return (upper - lower).log().sum(-1).float()


def test_discretized_logistic_sums_to_one_over_the_256_values():
    lik = make_likelihood("discretized_logistic")
    g = torch.Generator().manual_seed(4)
    mu = torch.cat([torch.rand(6, generator=g), torch.tensor([-0.5, 1.5, 0.5, 0.5])])
    log_s = torch.cat([torch.randn(6, generator=g) - 3, torch.tensor([-2.0, -2.0, -7.0, 3.0])])
    values = torch.arange(256, dtype=torch.float32)[:, None] / 255  # (256, 1): every value as its own row
    total = torch.stack(
        [
            lik.log_prob(values, torch.stack([m, s]).expand(256, 2)).exp().sum()
            for m, s in zip(mu, log_s, strict=True)
        ]
    )
    torch.testing.assert_close(total, torch.ones(10), atol=1e-5, rtol=0)
    assert lik.check_data(torch.tensor([[0.5]])) is not None and lik.check_data(values.T) is None


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return VAEModule(3, ModelConfig(latent_dim=1, hidden=(8,), activation="tanh"))


def test_estimators_a_and_b_have_the_same_expectation():
    module = _tiny_model()
    x = torch.tensor([[1.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        a = elbo(module, x, samples=200_000, estimator="mc", generator=g).elbo
        b = elbo(module, x, samples=200_000, estimator="analytic", generator=g).elbo
    assert abs(a.item() - b.item()) < 0.02


def test_gradients_reach_the_encoder():
    module = _tiny_model()
    elbo(module, torch.tensor([[1.0, 0.0, 1.0]])).loss().backward()
    for p in module.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_elbo_gap_equals_kl_to_exact_posterior_by_quadrature():
    """log p(x) - ELBO = KL(q(z|x) || p(z|x)), with log p(x) and the KL by quadrature over 1-D z."""
    module = _tiny_model(3)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    dz = z[1] - z[0]
    module = module.double()
    with torch.no_grad():
        mu, logvar = module.encode(x.double())
        log_pz = D.Normal(0.0, 1.0).log_prob(z)
        log_px_z = module.likelihood.log_prob(x.double(), module.decode(z[:, None, None]))  # (G, n)
        log_joint = log_px_z + log_pz[:, None]
        log_px = torch.logsumexp(log_joint, 0) + dz.log()
        log_post = log_joint - log_px
        q = D.Normal(mu[:, 0], (0.5 * logvar[:, 0]).exp())
        log_q = q.log_prob(z[:, None])
        kl_post = (log_q.exp() * (log_q - log_post)).sum(0) * dz
        exact_elbo = (log_q.exp() * (log_joint - log_q)).sum(0) * dz
        mc_elbo = elbo(module, x.double(), samples=400_000, generator=torch.Generator().manual_seed(0)).elbo
    assert (exact_elbo < log_px).all()
    torch.testing.assert_close(log_px - exact_elbo, kl_post, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mc_elbo, exact_elbo, atol=0.01, rtol=0)
    assert math.isfinite(float(log_px.sum()))


def test_iwae_bound_with_k_1_is_the_elbo_estimate():
    module = _tiny_model()
    x = torch.tensor([[1.0, 0.0, 1.0]])
    with torch.no_grad():
        iw = iwae_bound(module, x, k=1, generator=torch.Generator().manual_seed(5))
        el = elbo(module, x, estimator="mc", generator=torch.Generator().manual_seed(5)).elbo
    torch.testing.assert_close(iw, el)


def test_importance_sampled_log_likelihood_is_close_to_quadrature():
    """At k = 5000 the chunked estimate is within 0.05 nats of log p(x) computed by quadrature."""
    from vaekit.evaluate import importance_log_likelihood

    module = _tiny_model(3).double()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    with torch.no_grad():
        log_joint = (
            module.likelihood.log_prob(x, module.decode(z[:, None, None]))
            + D.Normal(0.0, 1.0).log_prob(z)[:, None]
        )
        log_px = torch.logsumexp(log_joint, 0) + (z[1] - z[0]).log()
    small_chunks = importance_log_likelihood(module, x, k=5000, seed=0, chunk=700)
    one_pass = importance_log_likelihood(module, x, k=5000, seed=0)
    assert ((small_chunks - log_px).abs() < 0.05).all()
    # E[estimate] rises with k (Burda et al. Thm 1): average over 2000 independent copies of x
    copies = x.repeat(2000, 1)
    means = [importance_log_likelihood(module, copies, k=k, seed=1).mean() for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2] <= log_px.mean() + 0.01
    assert one_pass.shape == (2,)
