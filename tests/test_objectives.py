"""Training objectives by their defining properties: IWAE bound, beta-VAE, KL warm-up, free bits."""

import math

import pytest
import torch
from torch import distributions as D

from vaekit import VAE, VaekitError
from vaekit.cli import main
from vaekit.config import ModelConfig, TrainConfig
from vaekit.evaluate import latent_usage
from vaekit.networks import VAEModule
from vaekit.objectives import beta_at, elbo, free_bits_kl, iwae_bound, log_weights, training_loss

X = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _tiny_model(seed=3):
    torch.manual_seed(seed)
    return VAEModule(3, ModelConfig(latent_dim=1, hidden=(8,), activation="tanh")).double()


def _log_px_by_quadrature(module, x):
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    with torch.no_grad():
        log_px_z = module.likelihood.log_prob(x, module.decode(z[:, None, None]))  # (G, n)
        log_joint = log_px_z + D.Normal(0.0, 1.0).log_prob(z)[:, None]
    return torch.logsumexp(log_joint, 0) + (z[1] - z[0]).log()


def test_iwae_bound_is_above_the_elbo_tightens_with_k_and_stays_below_log_px():
    """E[bound_k] rises with k towards log p(x) (Burda et al. 2015, Thm 1), beyond 4 standard errors."""
    module = _tiny_model()
    log_px = _log_px_by_quadrature(module, X).mean()
    copies = X.repeat(20_000, 1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        exact_elbo = elbo(module, X, samples=400_000, generator=g).elbo.mean()
        bounds = [
            iwae_bound(log_weights(module, copies, k=k, generator=g)).view(-1, 2).mean(1) for k in (1, 5, 50)
        ]
    means = [float(b.mean()) for b in bounds]
    ses = [float(b.std() / math.sqrt(len(b))) for b in bounds]
    assert abs(means[0] - float(exact_elbo)) < 4 * ses[0]  # k = 1 is the ELBO
    for lo, hi, se_lo, se_hi in zip(means, means[1:], ses, ses[1:], strict=False):
        assert hi - lo > 4 * math.hypot(se_lo, se_hi)
    assert means[-1] < float(log_px) + 4 * ses[-1]
    assert float(log_px) - means[-1] < 0.5 * (float(log_px) - means[0])  # k = 50 closes most of the gap


def test_iwae_training_loss_is_minus_the_bound_and_k_1_is_the_elbo():
    module = _tiny_model()
    cfg = TrainConfig(objective="iwae", samples=5)
    loss, terms = training_loss(module, X, None, cfg, generator=torch.Generator().manual_seed(1))
    bound = iwae_bound(log_weights(module, X, k=5, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(loss, -bound.mean())
    assert terms.recon.shape == terms.kl.shape == (2,)
    g = torch.Generator().manual_seed(2)
    one, _ = training_loss(module, X, None, TrainConfig(objective="iwae"), generator=g)
    mc = elbo(module, X, estimator="mc", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(one, -mc.elbo.mean())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.encoder.parameters())


def test_warmup_beta_follows_the_linear_schedule():
    assert [beta_at(s, 2.0, 4) for s in range(7)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert [beta_at(s, 3.0, 0) for s in range(3)] == [3.0, 3.0, 3.0]
    module = _tiny_model()
    cfg = TrainConfig(beta=2.0, warmup_steps=4)
    for step, beta in [(0, 0.0), (1, 0.5), (10, 2.0)]:
        loss, terms = training_loss(module, X, None, cfg, step, torch.Generator().manual_seed(0))
        torch.testing.assert_close(loss, (beta * terms.kl - terms.recon).mean())


def test_free_bits_floors_each_dimension_and_stops_its_gradient():
    kl = torch.tensor([[0.1, 2.0, 0.4], [0.3, 4.0, 0.8]], requires_grad=True)  # batch means 0.2, 3.0, 0.6
    term = free_bits_kl(kl, 0.5)
    torch.testing.assert_close(term, torch.tensor(0.5 + 3.0 + 0.6))
    term.backward()
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))
    # in the training loss each dimension's KL term is at least the floor
    module = _tiny_model()
    cfg = TrainConfig(free_bits=50.0)
    loss, terms = training_loss(module, X, None, cfg, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, 50.0 * module.latent_dim - terms.recon.mean())


def test_free_bits_keep_every_latent_dimension_in_use(mnist):
    """A beta = 4 VAE pushes some dimensions towards the prior; with a 1-nat floor each stays near it.

    Measured (seed 0): plain minimum 0.14 nats, floored dimensions 0.85 to 1.08 nats.
    """
    x, x_eval = mnist.x_train[:3000], mnist.x_train[:1000]
    common = dict(latent_dim=8, hidden=(128,), epochs=8, beta=4.0, batch_size=100)
    runs = {"plain": VAE(**common).fit(x), "floored": VAE(free_bits=1.0, **common).fit(x)}
    kl = {name: torch.tensor(latent_usage(vae.module_, x_eval)["kl_per_dim"]) for name, vae in runs.items()}
    assert kl["plain"].min() < 0.3
    assert kl["floored"].min() > 0.75


def test_beta_above_one_lowers_the_kl(mnist):
    x, x_test = mnist.x_train[:2000], mnist.x_test[:500]
    common = dict(latent_dim=8, hidden=(128,), epochs=3, batch_size=100)
    kls = [VAE(beta=beta, **common).fit(x).elbo_terms(x_test).kl.mean() for beta in (1.0, 4.0)]
    assert kls[1] < 0.7 * kls[0]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"objective": "iwae", "beta": 2.0}, "iwae"),
        ({"free_bits": 1.0, "estimator": "mc"}, "free_bits"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"objective": "vae"}, "objective"),
    ],
)
def test_bad_objective_settings_are_refused(kw, message):
    with pytest.raises(VaekitError, match=message):
        TrainConfig(**kw)


def test_cli_flags_reach_the_saved_config(tmp_path, mnist_subset, capsys):
    base = [
        "train",
        "--data",
        str(mnist_subset),
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
    ]
    runs = {
        "iwae": ["--objective", "iwae", "--samples", "3"],
        "fb": ["--free-bits", "0.5", "--warmup-steps", "5", "--beta", "2", "--arch", "conv"],
    }
    for name, flags in runs.items():
        assert main([*base, *flags, "-o", str(tmp_path / name)]) == 0
    iwae, fb = (VAE.load(tmp_path / name).get_params() for name in runs)
    assert (iwae["objective"], iwae["samples"]) == ("iwae", 3)
    assert (fb["free_bits"], fb["warmup_steps"], fb["beta"], fb["arch"]) == (0.5, 5, 2.0, "conv")
    capsys.readouterr()
    assert main([*base, "--objective", "iwae", "--beta", "2", "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error:") and "iwae" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()
