"""Two stochastic layers (Burda et al. 2015) and the VampPrior (Tomczak & Welling 2018)."""

import math

import numpy as np
import pytest
import torch

from vaekit import VAE, VaekitError
from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.evaluate import elbo_summary, importance_log_likelihoods, latent_usage
from vaekit.hierarchy import HierarchicalVAE, make_module
from vaekit.networks import GaussianEncoder, VAEModule
from vaekit.objectives import elbo, iwae_bound, log_weights
from vaekit.priors import VampPrior


def _normal(z, mu, logvar):
    """log N(z; mu, diag exp(logvar)) by torch.distributions, summed over the last axis."""
    return torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)


def test_vamp_log_prob_is_the_mixture_of_the_posteriors_at_the_pseudo_inputs():
    torch.manual_seed(0)
    prior = VampPrior(latent_dim=3, data_dim=4, components=5).double()
    encoder = GaussianEncoder(4, (6,), 3, "tanh").double()
    with torch.no_grad():
        prior.pseudo_inputs.uniform_(-0.5, 1.5)  # some outside [0, 1]: hardtanh clips them
    z = torch.randn(2, 7, 3, dtype=torch.float64)  # (L, n, J)
    mu, logvar = encoder(prior.pseudo_inputs.clamp(0.0, 1.0))  # (K, J) each
    by_hand = torch.stack([_normal(z, mu[k], logvar[k]) for k in range(5)]).logsumexp(0) - math.log(5)
    torch.testing.assert_close(prior.log_prob(z, encoder), by_hand, rtol=0, atol=1e-10)


def test_vamp_with_one_fixed_pseudo_input_is_that_gaussian():
    torch.manual_seed(1)
    prior = VampPrior(latent_dim=2, data_dim=3, components=1, bounded=False).double()
    encoder = GaussianEncoder(3, (5,), 2, "relu").double()
    u = torch.tensor([[0.2, -1.0, 3.0]], dtype=torch.float64)
    with torch.no_grad():
        prior.pseudo_inputs.copy_(u)
    z = torch.randn(4, 2, dtype=torch.float64)
    mu, logvar = encoder(u)
    torch.testing.assert_close(prior.log_prob(z, encoder), _normal(z, mu[0], logvar[0]), rtol=0, atol=1e-10)
    # the per-unit terms are then each unit's log q - log p exactly
    q_mu, q_logvar = torch.zeros(4, 2, dtype=torch.float64), torch.full((4, 2), -1.0, dtype=torch.float64)
    dims = prior.kl_dims(z, q_mu, q_logvar, encoder)
    expected = torch.distributions.Normal(q_mu, torch.exp(0.5 * q_logvar)).log_prob(
        z
    ) - torch.distributions.Normal(mu[0], torch.exp(0.5 * logvar[0])).log_prob(z)
    torch.testing.assert_close(dims, expected, rtol=0, atol=1e-10)


def test_the_default_model_is_the_one_layer_module():
    """The one-layer N(0, I) model is built as before (its numbers are those of tests/test_*.py)."""
    assert type(make_module(4, ModelConfig(latent_dim=2))) is VAEModule
    assert type(make_module(4, ModelConfig(latent_dim=2, upper_latents=(1,)))) is HierarchicalVAE
    assert type(make_module(4, ModelConfig(latent_dim=2, prior="vamp"))) is HierarchicalVAE


TINY = {
    "two layers": {"upper_latents": (1,)},
    "one layer, vamp": {"prior": "vamp", "prior_options": {"components": 3}},
    "two layers, vamp": {"upper_latents": (1,), "prior": "vamp", "prior_options": {"components": 3}},
}


def _exact_log_px(module, x):
    """log p(x) ``(n,)`` of a model with 1-d z_1 (and 1-d z_2) by quadrature on a grid."""
    grid = torch.linspace(-9.0, 9.0, 1201, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    if not module.down:  # log p(x) = log sum_z1 p(z1) p(x|z1) dz1
        log_pz1 = module.prior.log_prob(grid[:, None], module.top_posterior)  # (G,)
        log_joint = log_pz1[:, None] + module.likelihood.log_prob(x, module.decode(grid[:, None, None]))
        return torch.logsumexp(log_joint, 0) + math.log(step)
    z2 = grid[:, None]  # (G, 1): p(z2) over the grid
    log_pz2 = module.prior.log_prob(z2, module.top_posterior)  # (G,)
    mu, logvar = module.down[0](z2)  # p(z1|z2), each (G, 1)
    log_pz1_z2 = _normal(grid[:, None, None], mu, logvar)  # (G z1, G z2)
    log_px_z1 = module.likelihood.log_prob(x, module.decode(grid[:, None, None]))  # (G z1, n)
    log_pz1 = torch.logsumexp(log_pz1_z2 + log_pz2, 1) + math.log(step)  # (G z1,)
    return torch.logsumexp(log_pz1[:, None] + log_px_z1, 0) + math.log(step)


@pytest.mark.parametrize("kw", TINY.values(), ids=TINY.keys())
@torch.no_grad()
def test_elbo_is_below_the_integrated_log_likelihood_and_iwae_approaches_it(kw):
    """A 2-pixel Bernoulli model small enough to integrate: L <= IWAE_k <= log p(x), IWAE_k -> log p(x)."""
    torch.manual_seed(3)
    config = ModelConfig(latent_dim=1, hidden=(8,), upper_hidden=(8,), activation="tanh", **kw)
    module = make_module(2, config).double()
    for p in module.decoder.parameters():  # a sharp p(x|z1): a posterior far from the prior
        p.mul_(4.0)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    exact = _exact_log_px(module, x)
    assert torch.logsumexp(exact, 0) == pytest.approx(0.0, abs=1e-6)  # p sums to 1 over the 4 patterns
    gen = torch.Generator().manual_seed(0)
    bound = elbo(module, x, samples=20000, generator=gen).elbo
    assert (bound < exact - 0.01).all()
    gaps = []
    for k in (1, 10, 100, 1000):
        lw = log_weights(module, x.repeat(100, 1), k=k, generator=gen)  # 100 repeats of each pattern
        gaps.append(float((exact.repeat(100) - iwae_bound(lw)).mean()))
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] - 0.005  # within Monte Carlo noise once k is large
    assert -0.005 < gaps[3] < 0.1 * gaps[0]


def _fit(x, **kw):
    base = {"latent_dim": 6, "hidden": (32,), "upper_latents": (3,), "upper_hidden": (16,), "batch_size": 50}
    return VAE(**{**base, **kw}).fit(x)


def test_save_load_round_trip_gives_identical_scores(tmp_path, mnist):
    x = mnist.x_test[:60].numpy()
    vae = _fit(mnist.x_train[:200], epochs=1, prior="vamp", prior_options={"components": 7})
    vae.save(tmp_path / "m")
    again = VAE.load(tmp_path / "m")
    assert type(again.module_) is HierarchicalVAE and again.get_params() == vae.get_params()
    np.testing.assert_array_equal(again.score_samples(x, k=20), vae.score_samples(x, k=20))
    np.testing.assert_array_equal(again.sample(5, seed=2), vae.sample(5, seed=2))
    assert again.score(x) == vae.score(x)


@pytest.mark.parametrize(
    "kw", [{}, {"prior": "vamp", "prior_options": {"components": 20}}, {"objective": "iwae", "samples": 5}]
)
def test_a_few_epochs_on_a_few_hundred_digits_improve_the_bound(mnist, kw):
    vae = VAE(
        latent_dim=6, hidden=(64,), upper_latents=(3,), upper_hidden=(16,), batch_size=50, epochs=4, **kw
    )
    vae.fit(mnist.x_train[:400], X_test=mnist.x_test[:200])
    first, last = vae.history_[0]["test_elbo"], vae.history_[-1]["test_elbo"]
    assert last > first + 5.0


def test_layer_kls_add_up_to_the_kl_term(mnist):
    """latent_usage's per-layer KLs (seeded Monte Carlo) sum to the ELBO's KL term, and count each layer."""
    vae = _fit(mnist.x_train[:300], epochs=2)
    x = mnist.x_test[:300]
    usage = latent_usage(vae.module_, x)
    layers = usage["layers"]
    assert [layer["units"] for layer in layers] == [6, 3] and len(usage["kl_per_dim"]) == 9
    assert usage["active_units"] == sum(layer["active_units"] for layer in layers)
    kl = elbo_summary(vae.module_, x, samples=50)["kl"]
    assert sum(layer["kl"] for layer in layers) == pytest.approx(kl, rel=0.03)
    assert sum(usage["kl_per_dim"]) == pytest.approx(kl, rel=0.03)  # normal top: units split the KL


def test_importance_estimates_rise_with_k(mnist):
    vae = _fit(mnist.x_train[:300], epochs=1)
    est = importance_log_likelihoods(vae.module_, mnist.x_test[:50], ks=(500, 5, 1))
    assert est[0].mean() > est[1].mean() > est[2].mean()


def test_free_bits_need_a_closed_form_kl(mnist):
    with pytest.raises(VaekitError, match="free_bits needs one stochastic layer"):
        _fit(mnist.x_train[:100], epochs=1, free_bits=0.5)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"prior": "vamp", "conditional": True}, "unconditional"),
        ({"prior": "vamp", "prior_options": {"components": 0}}, "components must be an integer"),
        ({"prior": "vamp", "prior_options": {"width": 3}}, "do not fit prior"),
        ({"upper_latents": (0,)}, "upper_latents must be positive"),
        ({"prior": "flat"}, "prior must be one of"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(VaekitError, match=message):
        ModelConfig(**kw)


def test_train_flags_and_run_folder(tmp_path, mnist_subset, capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--upper-latents" in text and "--upper-hidden" in text and "--prior-options" in text
    assert "{normal,vamp}" in text
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(mnist_subset),
        "-o",
        str(run),
        "--epochs",
        "1",
        "--hidden",
        "32",
        "--quiet",
    ]
    argv += ["--latent-dim", "4", "--upper-latents", "2", "--upper-hidden", "8", "--prior", "vamp"]
    assert main([*argv, "--prior-options", '{"components": 5}']) == 0
    vae = VAE.load(run)
    assert vae.upper_latents == (2,) and vae.prior_options == {"components": 5}
    assert vae.module_.prior.pseudo_inputs.shape == (5, 784)
