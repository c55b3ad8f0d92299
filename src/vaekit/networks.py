"""torch.nn building blocks: the Gaussian encoder q(z|x), the decoder of p(x|z), and the VAE module.

Shapes: ``d`` data dimensions (flattened), ``J`` latent dimensions, ``c``
condition dimensions (0 for an unconditional model), ``L`` samples of z.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vaekit import limits
from vaekit.config import ModelConfig
from vaekit.errors import VaekitError
from vaekit.likelihoods import Likelihood, make_likelihood

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}

#: q(z|x) log-variances are clamped here: exp(-20) to exp(10) covers every posterior
#: seen in practice and keeps exp(logvar) and its gradient finite.
LOGVAR_RANGE = (-20.0, 10.0)

#: feature maps of the two 4x4 stride-2 convolutions of arch 'conv' (mirrored in the decoder)
CONV_CHANNELS = (32, 64)


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``, each followed by the activation."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def _with_condition(h: Tensor, y: Tensor | None) -> Tensor:
    """Append the condition y ``(n, c)`` to h ``(..., n, k)``, broadcasting over sample dims."""
    if y is None:
        return h
    return torch.cat([h, y.expand(*h.shape[:-1], y.shape[-1])], dim=-1)


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag exp(logvar(x))): an MLP trunk with separate linear heads."""

    def __init__(self, in_dim: int, hidden: Sequence[int], latent_dim: int, activation: str) -> None:
        super().__init__()
        self.trunk = mlp([in_dim, *hidden], activation)
        width = hidden[-1] if hidden else in_dim
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x ``(n, in_dim)`` -> mu, logvar, each ``(n, J)``."""
        h = self.trunk(x)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)


class Decoder(nn.Module):
    """z ``(..., n, in_dim)`` -> likelihood parameters ``(..., n, out_dim)`` (e.g. Bernoulli logits)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str) -> None:
        super().__init__()
        self.trunk = mlp([in_dim, *hidden], activation)
        self.out = nn.Linear(hidden[-1] if hidden else in_dim, out_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.out(self.trunk(z))


class ConvFeatures(nn.Module):
    """Image rows ``(n, C*H*W)`` -> features ``(n, 64 * H/4 * W/4)``: two 4x4 stride-2 convolutions."""

    def __init__(self, image_shape: Sequence[int], activation: str) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        c1, c2 = CONV_CHANNELS
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1), act(), nn.Conv2d(c1, c2, 4, stride=2, padding=1), act()
        )
        self.out_dim = c2 * (h // 4) * (w // 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.image_shape)).flatten(1)


class ConvOutput(nn.Module):
    """Features ``(..., n, 64 * H/4 * W/4)`` -> likelihood parameters ``(..., n, k * C*H*W)``.

    Two 4x4 stride-2 transposed convolutions; the k*C output channels are parameter-major,
    so the flattened row is [first parameter of every pixel, second ...] as likelihoods expect.
    """

    def __init__(self, image_shape: Sequence[int], params_per_dim: int, activation: str) -> None:
        super().__init__()
        c, h, w = image_shape
        c1, c2 = CONV_CHANNELS
        act = ACTIVATIONS[activation]
        self.grid = (c2, h // 4, w // 4)
        self.in_dim = c2 * (h // 4) * (w // 4)
        self.widest = c1 * (h // 2) * (w // 2)  # the first transposed convolution's output
        self.net = nn.Sequential(
            act(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(c1, params_per_dim * c, 4, stride=2, padding=1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h.reshape(-1, *self.grid)).reshape(*h.shape[:-1], -1)


class VAEModule(nn.Module):
    """The AEVB model: encoder q(z|x), prior N(0, I), decoder p(x|z), optionally conditioned on y.

    Parameters
    ----------
    data_dim : d, the number of (flattened) data dimensions
    config : the model configuration (latent size, hidden widths, activation, likelihood)
    cond_dim : c, the size of the condition vector y (0: unconditional)
    image_shape : (C, H, W) of the rows, needed by ``config.arch == 'conv'`` (H, W divisible by 4)

    With arch 'conv' the encoder's MLP (``config.hidden``) runs on convolutional
    features and the decoder's MLP feeds transposed convolutions; the condition y
    joins after the convolutions.
    """

    def __init__(
        self,
        data_dim: int,
        config: ModelConfig,
        cond_dim: int = 0,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        limits.check_network(type(self), data_dim, config, cond_dim, image_shape)
        super().__init__()
        self.data_dim, self.cond_dim, self.latent_dim = data_dim, cond_dim, config.latent_dim
        self.likelihood: Likelihood = make_likelihood(config.likelihood, config.sigma)
        k = self.likelihood.params_per_dim
        self.features: nn.Module = nn.Identity()
        self.to_data: nn.Module = nn.Identity()
        hidden = list(config.hidden)
        features, decoder_out = data_dim, k * data_dim
        #: floats the decoder's widest layer holds per sample of z; evaluation sizes its passes by it
        self.decode_floats = max([*hidden, k * data_dim])
        if config.arch == "conv":
            _check_conv_shape(image_shape, data_dim)
            self.features = ConvFeatures(image_shape, config.activation)  # type: ignore[arg-type]
            self.to_data = ConvOutput(image_shape, k, config.activation)  # type: ignore[arg-type]
            features, decoder_out = self.features.out_dim, self.to_data.in_dim
            self.decode_floats = max(self.decode_floats, self.to_data.widest)
        self.encoder = GaussianEncoder(features + cond_dim, hidden, config.latent_dim, config.activation)
        self.decoder = Decoder(config.latent_dim + cond_dim, hidden[::-1], decoder_out, config.activation)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x ``(n, d)``, y ``(n, c)`` -> mu, logvar of q(z|x, y), each ``(n, J)``."""
        return self.encoder(_with_condition(self.features(x), y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z ``(..., n, J)``, y ``(n, c)`` -> likelihood parameters ``(..., n, k * d)``."""
        return self.to_data(self.decoder(_with_condition(z, y)))


def _check_conv_shape(image_shape: Sequence[int] | None, data_dim: int) -> None:
    ok = image_shape is not None and len(image_shape) == 3
    if ok:
        c, h, w = image_shape  # type: ignore[misc]
        ok = c * h * w == data_dim and h % 4 == 0 and w % 4 == 0
    if not ok:
        raise VaekitError(
            f"arch 'conv' needs images of shape (C, H, W) with H and W divisible by 4 (such as 28x28 or "
            f"32x32) and C*H*W = {data_dim} features; got image shape {image_shape}"
        )
