"""Numerical checks of the likelihoods and objectives against closed forms, Monte Carlo and quadrature."""

import math

import pytest
import torch
from torch import distributions as D

from vaekit.config import ModelConfig
from vaekit.likelihoods import LIKELIHOODS, make_likelihood
from vaekit.networks import VAEModule
from vaekit.objectives import elbo, gaussian_kl, iwae_bound, log_weights, reparameterize


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
    lik = make_likelihood(name, {"sigma": 0.7} if name == "gaussian_fixed" else None)
    params = torch.randn(5, 6 * lik.params_per_pixel, generator=g)  # 6 one-channel pixels
    x = torch.rand(5, 6, generator=g)
    if name == "bernoulli":
        x = x.round()
        ref = D.Bernoulli(logits=params).log_prob(x).sum(-1)
    elif name == "gaussian":
        mu, logvar = params.chunk(2, -1)
        ref = D.Normal(mu, (0.5 * logvar).exp()).log_prob(x).sum(-1)
    elif name.startswith("discretized_logistic"):
        x = (x * 255).round() / 255
        x[0, :2] = torch.tensor([0.0, 1.0])  # the two edge bins
        if name == "discretized_logistic":
            ref = _bin_probability(x, *params.chunk(2, -1)).log().sum(-1).float()
        else:  # one channel: [K logits, K locations, K log-scales] of each pixel
            logits, mu, log_s = params.view(5, 3, -1, 6).unbind(1)  # each (5, K, 6)
            p = (logits.double().softmax(1) * _bin_probability(x[:, None], mu, log_s)).sum(1)
            ref = p.log().sum(-1).float()
    else:
        ref = D.Normal(params, 0.7).log_prob(x).sum(-1)
    torch.testing.assert_close(lik.log_prob(x, params), ref)


def _bin_probability(x, mu, log_s):
    """P(v) from the logistic CDF in float64: CDF(x + 1/510) - CDF(x - 1/510), tails at the edges."""
    mu, log_s = mu.double(), log_s.double()
    cdf = lambda t: torch.sigmoid((t - mu) / log_s.exp())  # noqa: E731
    x = x.double()
    upper = torch.where(x > 254.5 / 255, torch.ones_like(x), cdf(x + 0.5 / 255))
    lower = torch.where(x < 0.5 / 255, torch.zeros_like(x), cdf(x - 0.5 / 255))
    return upper - lower


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
        iw = iwae_bound(log_weights(module, x, k=1, generator=torch.Generator().manual_seed(5)))
        el = elbo(module, x, estimator="mc", generator=torch.Generator().manual_seed(5)).elbo
    torch.testing.assert_close(iw, el)


def _log_px_by_quadrature(module, x, grid=None):
    """Exact log p(x) ``(n,)`` of a 1-D latent model: log of the integral of p(x|z) p(z) on a fine grid."""
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64) if grid is None else grid
    log_joint = (
        module.likelihood.log_prob(x, module.decode(z[:, None, None]))
        + D.Normal(0.0, 1.0).log_prob(z)[:, None]
    )  # (G, n)
    return torch.logsumexp(log_joint, 0) + (z[1] - z[0]).log()


def _fit_encoder_to_posterior(module, x, steps=300):
    """Train q(z|x) alone by maximising the exact ELBO (quadrature over z): minimising KL(q || p(z|x))."""
    z = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    with torch.no_grad():
        log_joint = (
            module.likelihood.log_prob(x, module.decode(z[:, None, None]))
            + D.Normal(0.0, 1.0).log_prob(z)[:, None]
        )  # (G, n)
    optimizer = torch.optim.Adam(module.encoder.parameters(), lr=0.05)
    for _ in range(steps):
        mu, logvar = module.encode(x)
        log_q = D.Normal(mu[:, 0], (0.5 * logvar[:, 0]).exp()).log_prob(z[:, None])  # (G, n)
        exact_elbo = (log_q.exp() * (log_joint - log_q)).sum(0) * (z[1] - z[0])
        optimizer.zero_grad()
        (-exact_elbo.sum()).backward()
        optimizer.step()
    return exact_elbo.detach()


def test_importance_sampled_log_likelihood_matches_quadrature():
    """On all 8 x in {0,1}^3: the estimate's mean rises with k (Burda et al. Thm 1); once q is trained,
    k = 5000 is within 0.01 nats of the exact log p(x) and never above it by more than 3 standard errors."""
    from vaekit.evaluate import importance_log_likelihood

    module = _tiny_model(3).double()
    x = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * 3)  # (8, 3)
    with torch.no_grad():
        log_px = _log_px_by_quadrature(module, x)
        assert float(torch.logsumexp(log_px, 0)) == pytest.approx(0.0, abs=1e-6)  # p sums to 1 over x
        # the untrained q leaves a visible gap: means over 2000 independent copies of each x
        runs = [
            importance_log_likelihood(module, x.repeat(2000, 1), k=k, seed=1).view(2000, 8).mean(1)
            for k in (1, 4, 16)
        ]
    means = torch.stack([r.mean() for r in runs])
    sems = torch.stack([r.std() / math.sqrt(len(r)) for r in runs])
    assert (means.diff() > 4 * (sems[1:] + sems[:-1])).all()
    assert means[-1] < log_px.mean() + 3 * sems[-1]

    exact_elbo = _fit_encoder_to_posterior(module, x, steps=40)
    with torch.no_grad():
        assert (exact_elbo < log_px).all() and (log_px - exact_elbo).max() < 0.01  # q is good, not exact
        estimate = importance_log_likelihood(module, x, k=5000, seed=0, chunk=700)  # several chunks
        assert (estimate - log_px).abs().max() < 0.01
        # Monte Carlo standard error of log of a mean of k weights (delta method): sd(w) / (sqrt(k) mean(w))
        w = (log_weights(module, x, k=5000, generator=torch.Generator().manual_seed(9)) - log_px).exp()
        sem = w.std(0) / (w.mean(0) * math.sqrt(5000))
    assert (sem > 0).all() and (estimate - log_px < 3 * sem).all()


def test_importance_sampling_progress_bar_is_opt_in(capsys):
    from vaekit.evaluate import importance_log_likelihood

    module, x = _tiny_model(), torch.tensor([[1.0, 0.0, 1.0]] * 30)
    quiet = importance_log_likelihood(module, x, k=100, seed=0, chunk=1000)
    assert capsys.readouterr().err == ""
    shown = importance_log_likelihood(module, x, k=100, seed=0, chunk=1000, progress=True)
    assert "30/30" in capsys.readouterr().err
    torch.testing.assert_close(quiet, shown)
