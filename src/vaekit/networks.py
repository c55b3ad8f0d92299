"""torch.nn building blocks: the Gaussian encoder q(z|x), the decoder of p(x|z), and the VAE module.

Shapes: ``d`` data dimensions (flattened), ``J`` latent dimensions, ``c``
condition dimensions (0 for an unconditional model), ``L`` samples of z.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vaekit.config import ModelConfig
from vaekit.likelihoods import Likelihood, make_likelihood

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}

#: q(z|x) log-variances are clamped here: exp(-20) to exp(10) covers every posterior
#: seen in practice and keeps exp(logvar) and its gradient finite.
LOGVAR_RANGE = (-20.0, 10.0)


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


class VAEModule(nn.Module):
    """The AEVB model: encoder q(z|x), prior N(0, I), decoder p(x|z), optionally conditioned on y.

    Parameters
    ----------
    data_dim : d, the number of (flattened) data dimensions
    config : the model configuration (latent size, hidden widths, activation, likelihood)
    cond_dim : c, the size of the condition vector y (0: unconditional)
    """

    def __init__(self, data_dim: int, config: ModelConfig, cond_dim: int = 0) -> None:
        super().__init__()
        self.data_dim, self.cond_dim, self.latent_dim = data_dim, cond_dim, config.latent_dim
        self.likelihood: Likelihood = make_likelihood(config.likelihood, config.sigma)
        hidden = list(config.hidden)
        self.encoder = GaussianEncoder(data_dim + cond_dim, hidden, config.latent_dim, config.activation)
        self.decoder = Decoder(
            config.latent_dim + cond_dim,
            hidden[::-1],
            self.likelihood.params_per_dim * data_dim,
            config.activation,
        )

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x ``(n, d)``, y ``(n, c)`` -> mu, logvar of q(z|x, y), each ``(n, J)``."""
        return self.encoder(_with_condition(x, y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z ``(..., n, J)``, y ``(n, c)`` -> likelihood parameters ``(..., n, k * d)``."""
        return self.decoder(_with_condition(z, y))
