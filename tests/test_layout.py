"""Channels-last image batches (:mod:`vaekit.layout`): the same functions, another memory order.

CUDA is where they are used; here the CPU is made a channels-last device to run that path."""

import numpy as np
import pytest
import torch
from torch import nn

from vaekit import layout
from vaekit.config import ModelConfig
from vaekit.networks import VAEModule
from vaekit.objectives import elbo

SHAPE = (3, 16, 16)
SMALL = {"width": 8, "blocks": 1, "levels": 2}
ARCHS = {
    "conv": {"arch": "conv", "likelihood": "discretized_logistic"},
    "resnet-flat": {"arch": "resnet", "arch_options": SMALL},
    "resnet-grid": {"arch": "resnet", "arch_options": {**SMALL, "latent": "grid"}},
}


def _elbo_and_gradients(config, x, y):
    torch.manual_seed(0)
    module = VAEModule(x.shape[1], config, y.shape[1], SHAPE)
    formats = []
    for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)):
        conv.register_forward_pre_hook(
            lambda _, args: formats.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
    terms = elbo(module, x, y, samples=2, generator=torch.Generator().manual_seed(1))
    terms.loss().backward()
    return terms.elbo.detach(), {n: p.grad for n, p in module.named_parameters()}, formats


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_channels_last_batches_give_the_same_elbo_and_gradients(arch, monkeypatch):
    config = ModelConfig(latent_dim=16, hidden=(32,), **ARCHS[arch])
    d = int(np.prod(SHAPE))
    x = torch.randint(0, 256, (6, d), generator=torch.Generator().manual_seed(0)).float() / 255
    y = torch.eye(2)[torch.tensor([0, 1, 0, 1, 1, 0])]
    value, grads, formats = _elbo_and_gradients(config, x, y)
    assert not any(formats)  # the CPU default: contiguous NCHW
    monkeypatch.setattr(layout, "CHANNELS_LAST_DEVICES", frozenset({"cpu"}))
    value_cl, grads_cl, formats_cl = _elbo_and_gradients(config, x, y)
    assert formats_cl and all(formats_cl)  # every convolution's input was channels-last
    torch.testing.assert_close(value_cl, value, rtol=1e-5, atol=1e-4)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_cl[name], grad, rtol=1e-4, atol=1e-5, msg=name)
