"""Priors p(z) of the top stochastic layer: the standard normal and the VampPrior.

Shapes: ``n`` examples, ``J`` units of the top layer, ``K`` mixture components, ``d`` data dimensions.

A prior is an ``nn.Module`` (its parameters train with the model) from the :data:`PRIORS`
registry (``ModelConfig.prior``), built as ``PRIORS[name](latent_dim, data_dim, **prior_options)``.
Its methods take ``posterior``, the map from data rows ``(K, d)`` to the top layer's
``(mu, logvar)`` of q, each ``(K, J)``: the VampPrior's components are q at its pseudo-inputs.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vaekit import limits
from vaekit.errors import VaekitError
from vaekit.objectives import gaussian_kl, log_normal, log_standard_normal

#: data rows (K, d) -> (mu, logvar) of the top layer's q, each (K, J)
Posterior = Callable[[Tensor], tuple[Tensor, Tensor]]


class StandardNormal(nn.Module):
    """p(z) = N(0, I): the AEVB prior, with a closed-form KL (Kingma & Welling 2014, App. B)."""

    def __init__(self, latent_dim: int, data_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: Tensor, posterior: Posterior) -> Tensor:
        """log p(z) of z ``(..., n, J)``: ``(..., n)`` nats."""
        return log_standard_normal(z)

    def kl(self, mu: Tensor, logvar: Tensor) -> Tensor | None:
        """KL(N(mu, diag exp(logvar)) || p) ``(..., n)`` in closed form, or None where there is none."""
        return gaussian_kl(mu, logvar).sum(-1)

    def kl_dims(self, z: Tensor, mu: Tensor, logvar: Tensor, posterior: Posterior) -> Tensor:
        """Per-unit KL ``(..., n, J)`` of q = N(mu, diag exp(logvar)) from p (closed form)."""
        return gaussian_kl(mu, logvar)

    def sample(self, n: int, posterior: Posterior, generator: torch.Generator) -> Tensor:
        """n draws z ~ p ``(n, J)`` on the generator's device."""
        return torch.randn(n, self.latent_dim, generator=generator, device=generator.device)


class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z|u_k): the mixture of the posteriors at K learned pseudo-inputs u_k
    (Tomczak & Welling 2018, eq. 9).

    Pseudo-inputs are stored raw and initialised N(0.05, 0.01^2) per value, as the paper's
    MNIST implementation does; with ``bounded`` (for data in [0, 1], as every image
    likelihood's) they pass through hardtanh onto [0, 1] (that implementation's choice).
    The KL to this prior has no closed form; objectives estimate it by Monte Carlo.

    Parameters
    ----------
    latent_dim : J, units of the top layer
    data_dim : d, the shape of a pseudo-input
    components : K, pseudo-inputs (the paper's 500 for MNIST)
    bounded : clip pseudo-inputs to [0, 1]; False for data on another scale
    """

    INIT_MEAN, INIT_STD = 0.05, 0.01  # the paper's implementation, for MNIST-like data

    def __init__(self, latent_dim: int, data_dim: int, components: int = 500, bounded: bool = True) -> None:
        super().__init__()
        check_components(components)
        self.latent_dim, self.bounded = latent_dim, bounded
        self.floats_per_sample = components  # log p(z) holds (..., n, K) component densities
        self.pseudo_inputs = nn.Parameter(torch.randn(components, data_dim) * self.INIT_STD + self.INIT_MEAN)

    def inputs(self) -> Tensor:
        """The pseudo-inputs u_k as data rows ``(K, d)``."""
        u = self.pseudo_inputs
        return nn.functional.hardtanh(u, 0.0, 1.0) if self.bounded else u

    def log_prob(self, z: Tensor, posterior: Posterior) -> Tensor:
        """log (1/K) sum_k N(z; mu_k, diag var_k) of z ``(..., n, J)``: ``(..., n)`` nats.

        The quadratic form sum_j (z_j - mu_kj)^2 / var_kj is expanded into two matrix products,
        so memory is ``(..., n, K)``, not ``(..., n, K, J)``.
        """
        mu, logvar = posterior(self.inputs())  # (K, J) each
        precision = torch.exp(-logvar)  # (K, J)
        quadratic = (
            z.square() @ precision.T - 2.0 * z @ (mu * precision).T + (mu.square() * precision).sum(-1)
        )  # (..., n, K)
        log_components = -0.5 * (z.shape[-1] * math.log(2 * math.pi) + logvar.sum(-1) + quadratic)
        return torch.logsumexp(log_components, dim=-1) - math.log(len(mu))

    def kl(self, mu: Tensor, logvar: Tensor) -> Tensor | None:
        return None

    def kl_dims(self, z: Tensor, mu: Tensor, logvar: Tensor, posterior: Posterior) -> Tensor:
        """Per-unit KL ``(..., n, J)`` of the one-unit marginals, log q(z_j) - log p(z_j) at z:
        a Monte Carlo term of KL(q_j || p_j), p_j = (1/K) sum_k N(mu_kj, var_kj) (each unit's own
        marginal; their sum is not the KL of the joint, which a mixture does not split)."""
        mu_k, logvar_k = posterior(self.inputs())  # (K, J) each
        # log N(z_j; mu_kj, var_kj) for each unit alone: log_normal over a last axis of size 1
        log_pk = log_normal(z[..., None, :, None], mu_k[..., None], logvar_k[..., None])  # (..., n, K, J)
        log_pj = torch.logsumexp(log_pk, dim=-2) - math.log(len(mu_k))  # (..., n, J)
        return log_normal(z[..., None], mu[..., None], logvar[..., None]) - log_pj

    def sample(self, n: int, posterior: Posterior, generator: torch.Generator) -> Tensor:
        """n draws ``(n, J)``: a component k uniformly, then z ~ q(z|u_k); on the generator's device."""
        u = self.inputs()
        k = torch.randint(len(u), (n,), generator=generator, device=generator.device)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=generator.device)
        mu, logvar = posterior(u)  # (K, J) each
        k, eps = k.to(mu.device), eps.to(mu.device)
        return mu[k] + torch.exp(0.5 * logvar[k]) * eps


def check_components(components: object) -> None:
    """VaekitError unless the number of pseudo-inputs is a positive integer within limits."""
    integer = isinstance(components, numbers.Integral) and not isinstance(components, bool)
    if not integer or not 0 < components <= limits.MAX_WIDTH:  # type: ignore[operator]
        raise VaekitError(
            f"prior_options components must be an integer from 1 to {limits.MAX_WIDTH} "
            f"(limits.MAX_WIDTH), got {limits.show(components)}"
        )


#: priors of the top stochastic layer by name (``ModelConfig.prior``):
#: cls(latent_dim, data_dim, **prior_options)
PRIORS: dict[str, type[nn.Module]] = {"normal": StandardNormal, "vamp": VampPrior}


def make_prior(name: str, latent_dim: int, data_dim: int, options: Mapping[str, Any] | None) -> nn.Module:
    """The registered prior ``name`` over ``latent_dim`` units, with its keyword ``options``."""
    check_prior(name, options)
    return PRIORS[name](latent_dim, data_dim, **dict(options or {}))


def check_prior(name: str, options: Mapping[str, Any] | None) -> None:
    """VaekitError unless ``name`` is registered, takes the keyword ``options`` and they are valid."""
    options = dict(options or {})
    try:
        inspect.signature(PRIORS[name]).bind(1, 1, **options)
    except TypeError as e:
        raise VaekitError(f"prior_options {options} do not fit prior {name!r} ({e})") from e
    if "components" in options:
        check_components(options["components"])
    if not isinstance(options.get("bounded", True), bool):
        raise VaekitError(f"prior_options bounded must be true or false, got {options['bounded']!r}")
