"""vaekit.fused's hand-derived backward pass equals autograd on objectives.elbo; used only where it can be."""

import pytest
import torch

from vaekit import VaekitError
from vaekit.config import ModelConfig, TrainConfig
from vaekit.fused import elbo_step, supports
from vaekit.networks import VAEModule
from vaekit.objectives import elbo
from vaekit.train import Trainer


def _module(hidden, activation, latent_dim=3, likelihood="bernoulli", seed=0):
    torch.manual_seed(seed)
    return VAEModule(
        12, ModelConfig(latent_dim=latent_dim, hidden=hidden, activation=activation, likelihood=likelihood)
    )


@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("samples, beta, scale", [(1, 1.0, 1.0), (3, 2.5, 0.75)])
def test_gradients_equal_autograd(hidden, activation, samples, beta, scale):
    module = _module(hidden, activation).double()
    with torch.no_grad():  # push some log-variances past the clamp so its gradient mask is exercised
        module.encoder.logvar.bias[:2] = torch.tensor([14.0, -25.0])
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(7, 12, generator=gen, dtype=torch.float64)
    eps = torch.randn(samples, 7, 3, generator=gen, dtype=torch.float64)

    terms = elbo(module, x, None, samples, "analytic", eps=eps)
    loss = terms.loss(beta) * scale
    expected = torch.autograd.grad(loss, list(module.parameters()))

    fused_terms, fused_loss = elbo_step(module, x, eps, beta, scale)
    # float64: agreement to ~1e-9 (the clamped log-variance makes some gradients ~100)
    torch.testing.assert_close(fused_loss, loss.detach())
    torch.testing.assert_close(fused_terms.recon, terms.recon.detach())
    torch.testing.assert_close(fused_terms.kl, terms.kl.detach())
    for (name, p), g in zip(module.named_parameters(), expected, strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, g, rtol=1e-7, atol=1e-9, msg=name)
    assert float(module.encoder.logvar.bias.grad[:2].abs().sum()) == 0.0  # clamped: no gradient


@pytest.mark.parametrize(
    "model, train, expected",
    [
        ({}, {}, True),
        ({"activation": "tanh", "hidden": (8, 8)}, {"samples": 2, "beta": 3.0, "binarize": "dynamic"}, True),
        ({}, {"warmup_steps": 100}, True),
        ({}, {"estimator": "mc"}, False),
        ({}, {"objective": "iwae", "samples": 5}, False),
        ({}, {"free_bits": 0.5}, False),
        ({"likelihood": "gaussian"}, {}, False),
        ({"likelihood": "gaussian_fixed"}, {}, False),
    ],
)
def test_used_only_where_it_computes_the_same(model, train, expected):
    assert (
        supports(_module(**{"hidden": (4,), "activation": "relu", **model}), TrainConfig(**train)) is expected
    )


def test_the_trainer_keeps_every_parameter_and_gradient_in_one_buffer():
    torch.manual_seed(0)
    module = _module((16,), "relu")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = Trainer(module, TrainConfig(batch_size=7))
    theta = trainer.flat.theta
    assert theta.numel() == sum(p.numel() for p in module.parameters())
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())  # values kept
    x = torch.rand(7, 12, generator=torch.Generator().manual_seed(1))
    module.zero_grad()  # set_to_none: the trainer must re-attach its gradient views
    trainer.train_step(x)
    offset = 0
    for p in module.parameters():
        n = p.numel()
        assert torch.equal(p.detach().reshape(-1), theta.detach()[offset : offset + n])
        assert torch.equal(p.grad.reshape(-1), theta.grad[offset : offset + n])
        offset += n
    assert not torch.equal(before["decoder.out.weight"], module.decoder.out.weight)  # the step reached it
    assert float(theta.grad.abs().sum()) > 0


def test_a_model_moved_after_training_started_is_an_error_not_a_silent_no_op():
    module = _module((4,), "tanh")
    trainer = Trainer(module, TrainConfig(batch_size=2))
    module.double()  # replaces every parameter's tensor
    with pytest.raises(VaekitError, match=r"parameters were replaced after training started"):
        trainer.train_step(torch.rand(2, 12, dtype=torch.float64))
