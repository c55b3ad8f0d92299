"""Residual convolutional encoder and decoder (arch 'resnet') for natural images."""

import numpy as np
import pytest
import torch

from vaekit import VAE, VaekitError
from vaekit.config import ModelConfig
from vaekit.networks import VAEModule
from vaekit.objectives import elbo
from vaekit.resnet import ResidualBlock, WNConv2d

SMALL = {"width": 8, "blocks": 1}
MIXTURE = {"likelihood": "discretized_logistic_mixture", "likelihood_options": {"components": 2}}


def _module(shape, latent="flat", latent_dim=16, cond_dim=0, **model):
    torch.manual_seed(0)
    options = {**SMALL, "latent": latent}
    config = ModelConfig(arch="resnet", arch_options=options, latent_dim=latent_dim, hidden=(32,), **model)
    return VAEModule(int(np.prod(shape)), config, cond_dim, shape)


def _bytes(n, d, seed=0):
    return torch.randint(0, 256, (n, d), generator=torch.Generator().manual_seed(seed)).float() / 255


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 64, 64), (1, 32, 32), (3, 16, 24)])
@pytest.mark.parametrize("latent", ["flat", "grid"])
def test_shapes_of_codes_and_parameters_and_every_layer_learns(shape, latent):
    c, h, w = shape
    cells = (h // 8) * (w // 8)  # the 3 halvings of the default levels
    j = 2 * cells if latent == "grid" else 16
    module = _module(shape, latent, j, cond_dim=2, **MIXTURE)
    d = c * h * w
    x, y = _bytes(5, d), torch.eye(2)[torch.tensor([0, 1, 0, 1, 1])]
    mu, logvar = module.encode(x, y)
    assert mu.shape == logvar.shape == (5, j)
    params = module.decode(torch.randn(4, 5, j), y)
    per_pixel = 2 * (1 + 2 * c + c * (c - 1) // 2)  # K = 2 components
    assert params.shape == (4, 5, per_pixel * h * w) and module.likelihood.params_per_pixel == per_pixel
    # residual branches start at zero (the last conv's gain): only that gain has a gradient at first,
    # the rest of each branch gets one after a step
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        terms = elbo(module, x, y, samples=2)
        terms.loss().backward()
        optimizer.step()
    assert torch.isfinite(terms.elbo).all()
    for name, p in module.named_parameters():
        assert p.grad.abs().sum() > 0, name


def test_the_condition_changes_the_decoded_parameters():
    for latent in ("flat", "grid"):
        module = _module((3, 16, 16), latent, 8, cond_dim=2)
        z = torch.randn(3, 8)
        with torch.no_grad():
            a = module.decode(z, torch.eye(2)[[0, 0, 0]])
            b = module.decode(z, torch.eye(2)[[1, 1, 1]])
        assert not torch.allclose(a, b)


def test_28x28_is_refused_with_one_line_and_fits_with_two_levels():
    with pytest.raises(VaekitError, match="multiples of 8") as e:
        VAE(arch="resnet", epochs=1).fit(np.zeros((4, 28, 28)))
    assert "\n" not in str(e.value) and "28, 28" in str(e.value)
    with pytest.raises(VaekitError, match="needs \\(C, H, W\\) images"):
        VAE(arch="resnet", epochs=1).fit(np.zeros((4, 10)))
    config = ModelConfig(arch="resnet", arch_options={**SMALL, "levels": 2, "latent": "grid"}, latent_dim=49)
    module = VAEModule(784, config, image_shape=(1, 28, 28))
    assert module.encode(torch.rand(2, 784))[0].shape == (2, 49)  # one map on the 7x7 grid


@pytest.mark.parametrize(
    "options, says",
    [
        ({"width": 0}, "width"),
        ({"width": 2.5}, "width"),
        ({"width": True}, "width"),
        ({"width": 2**17}, "MAX_WIDTH"),
        ({"blocks": -1}, "blocks"),
        ({"levels": 0}, "levels"),
        ({"levels": 14}, "MAX_LEVELS"),
        ({"latent": "mesh"}, "latent"),
        ({"depth": 3}, "do not fit"),
    ],
)
def test_bad_options_are_refused_with_one_line(options, says):
    with pytest.raises(VaekitError, match=says) as e:
        ModelConfig(arch="resnet", arch_options=options)
    assert "\n" not in str(e.value)


def test_a_grid_latent_needs_a_multiple_of_the_grid_cells():
    with pytest.raises(VaekitError, match="multiple of 16"):
        _module((3, 32, 32), "grid", 20)


def test_blocks_start_as_the_identity_and_weight_norm_ignores_the_scale_of_v():
    torch.manual_seed(0)
    block, x = ResidualBlock(4, "relu"), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(block(x), x)
    conv = WNConv2d(4, 6, 3)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0)
    torch.testing.assert_close(conv(x), before)
    filters = conv.weight * conv.gain / torch.linalg.vector_norm(conv.weight, dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(torch.linalg.vector_norm(filters, dim=(1, 2, 3)), torch.ones(6))


def test_each_example_is_computed_alone_and_the_same_in_training_and_evaluation():
    """No batch statistics: an example's code and parameters do not depend on its batch or the mode."""
    module = _module((3, 16, 16))
    x = _bytes(4, 768)
    with torch.no_grad():
        together = module.encode(x)[0]
        alone = torch.cat([module.encode(x[i : i + 1])[0] for i in range(4)])
        module.eval()
        evaluated = module.encode(x)[0]
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(together, evaluated)


def test_training_on_photo_patches_improves_the_elbo_and_round_trips(photo_patches, tmp_path):
    train, test = photo_patches[:500], photo_patches[500:]
    params = dict(arch="resnet", arch_options=SMALL, latent_dim=16, hidden=(64,), batch_size=50, **MIXTURE)
    untrained = VAE(**params, epochs=1, lr=1e-12).fit(train[:50])
    vae = VAE(**params, epochs=3, lr=3e-3).fit(train)
    before, after = untrained.score(test), vae.score(test)
    d = test[0].size
    assert after > before + 0.5 * d  # half a nat per dimension: measured -6.66 -> -5.23 nats/dim (seed 0)
    vae.save(tmp_path / "m")
    loaded = VAE.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.transform(test[:5]), vae.transform(test[:5]))
    assert loaded.score(test[:20]) == vae.score(test[:20])
