"""Variational objectives, as pure functions of a :class:`~vaekit.networks.VAEModule` and data.

All values are per data point, in nats. Shapes: ``n`` examples, ``d`` data
dimensions, ``J`` latent dimensions, ``L`` (or ``k``) samples of z per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vaekit.likelihoods import LOG_2PI

if TYPE_CHECKING:
    from vaekit.networks import VAEModule


@dataclass
class ELBOTerms:
    """The two terms of the evidence lower bound, per example.

    recon : (n,) Monte Carlo estimate of E_q[log p(x|z)], nats
    kl    : (n,) KL(q(z|x) || p(z)), nats (closed form, or its Monte Carlo estimate)
    """

    recon: Tensor
    kl: Tensor

    @property
    def elbo(self) -> Tensor:
        """(n,) L(theta, phi; x) = recon - kl <= log p(x)."""
        return self.recon - self.kl

    def loss(self, beta: float = 1.0) -> Tensor:
        """Scalar to minimise: the mean over the batch of -(recon - beta * kl)."""
        return (beta * self.kl - self.recon).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per dimension, ``(..., J)`` nats.

    -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2) (Kingma & Welling 2014, App. B).
    """
    return -0.5 * (1.0 + logvar - mu.square() - logvar.exp())


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).square() * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension: the prior log p(z)."""
    return -0.5 * (LOG_2PI + z.square()).sum(-1)


def reparameterize(
    mu: Tensor, logvar: Tensor, samples: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I): ``(samples, n, J)``, differentiable in mu and logvar."""
    eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def elbo(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    samples: int = 1,
    estimator: str = "analytic",
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    """SGVB estimate of the ELBO for each row of x ``(n, d)``.

    estimator 'analytic' is the paper's estimator B (closed-form KL, Monte Carlo
    reconstruction term); 'mc' is estimator A (every term by Monte Carlo:
    (1/L) sum_l log p(x, z_l) - log q(z_l|x)). Both are unbiased for the same ELBO.
    """
    mu, logvar = module.encode(x, y)  # (n, J) each
    z = reparameterize(mu, logvar, samples, generator)  # (L, n, J)
    recon = module.likelihood.log_prob(x, module.decode(z, y)).mean(0)  # (n,)
    if estimator == "analytic":
        kl = gaussian_kl(mu, logvar).sum(-1)
    else:
        kl = (log_normal(z, mu, logvar) - log_standard_normal(z)).mean(0)
    return ELBOTerms(recon=recon, kl=kl)


def log_weights(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    k: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance log-weights log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x): ``(k, n)`` nats."""
    mu, logvar = module.encode(x, y)
    z = reparameterize(mu, logvar, k, generator)  # (k, n, J)
    log_px_z = module.likelihood.log_prob(x, module.decode(z, y))  # (k, n)
    return log_px_z + log_standard_normal(z) - log_normal(z, mu, logvar)


def iwae_bound(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    k: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log (1/k) sum_i p(x, z_i) / q(z_i|x): ``(n,)`` nats (Burda et al. 2015); k = 1 is the ELBO."""
    return torch.logsumexp(log_weights(module, x, y, k, generator), dim=0) - math.log(k)
