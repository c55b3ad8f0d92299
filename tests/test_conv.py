"""Convolutional encoder and decoder (arch 'conv') for 28x28 and 32x32 images with 1 or 3 channels."""

import numpy as np
import pytest
import torch

from vaekit import VAE, VaekitError
from vaekit.config import ModelConfig
from vaekit.likelihoods import LIKELIHOODS
from vaekit.networks import VAEModule
from vaekit.objectives import elbo


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_conv_module_gives_every_likelihood_its_parameters(shape, likelihood):
    torch.manual_seed(0)
    d = int(np.prod(shape))
    module = VAEModule(
        d, ModelConfig(arch="conv", latent_dim=3, hidden=(16,), likelihood=likelihood), 2, shape
    )
    x = (torch.rand(5, d) * 255).round() / 255
    y = torch.eye(2)[torch.tensor([0, 1, 0, 1, 1])]
    params = module.decode(torch.randn(4, 5, 3), y)
    assert params.shape == (4, 5, module.likelihood.params_per_pixel * d // shape[0])
    terms = elbo(module, x, y, samples=2)
    terms.loss().backward()
    assert torch.isfinite(terms.elbo).all()
    for p in (*module.encoder.features.parameters(), *module.decoder.to_data.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_conv_vae_learns_mnist_and_round_trips(mnist, tmp_path):
    x = mnist.x_train[:4000].numpy().reshape(-1, 28, 28)
    vae = VAE(arch="conv", latent_dim=8, hidden=(64,), epochs=2, batch_size=64)
    untrained = VAE(arch="conv", latent_dim=8, hidden=(64,), epochs=1, lr=1e-12).fit(x[:64])
    vae.fit(x)
    test = mnist.x_test[:300]
    assert untrained.score(test) < -400
    assert vae.score(test) > -200  # measured: -193.5 (seed 0); untrained: about -500
    vae.save(tmp_path / "m")
    np.testing.assert_array_equal(VAE.load(tmp_path / "m").transform(test), vae.transform(test))


def test_conv_needs_image_shapes_divisible_by_4():
    with pytest.raises(VaekitError, match="divisible by 4"):
        VAE(arch="conv", epochs=1).fit(np.zeros((4, 30, 30)))
    with pytest.raises(VaekitError, match="divisible by 4"):
        VAE(arch="conv", epochs=1).fit(np.zeros((4, 10)))


def test_conv_features_are_translation_equivariant():
    """Shifting a digit by 4 pixels shifts the stride-4 feature maps by one cell (shared weights)."""
    torch.manual_seed(0)
    module = VAEModule(784, ModelConfig(arch="conv"), image_shape=(1, 28, 28))
    image = torch.zeros(1, 28, 28)
    image[0, 8:16, 6:20] = torch.rand(8, 14)
    shifted = torch.roll(image, shifts=4, dims=1)  # 4 rows down; the content stays inside
    with torch.no_grad():
        maps = [module.encoder.features.net(im[None]) for im in (image, shifted)]  # (1, 64, 7, 7) each
    torch.testing.assert_close(maps[1][..., 2:6, :], maps[0][..., 1:5, :])
    assert not torch.allclose(maps[0], maps[1])


def test_importance_sampling_passes_shrink_with_the_decoder_width():
    """A conv decoder holds 32x14x14 floats per sample, 8x an MNIST row: evaluation takes fewer per pass."""
    from vaekit.evaluate import importance_log_likelihood

    torch.manual_seed(0)
    conv = VAEModule(784, ModelConfig(arch="conv", hidden=(16,)), image_shape=(1, 28, 28))
    assert conv.decode_floats == 32 * 14 * 14
    assert VAEModule(784, ModelConfig()).decode_floats == 784
    x = (torch.rand(3, 784) > 0.5).float()
    sizes = []
    decode = conv.decode
    conv.decode = lambda z, y=None: sizes.append(z.shape[0] * z.shape[1]) or decode(z, y)
    log_px = importance_log_likelihood(conv, x, k=64, seed=0, chunk=8 * 50)  # budget: 50 conv samples
    assert max(sizes) <= 50 and sum(sizes) == 3 * 64 and torch.isfinite(log_px).all()
