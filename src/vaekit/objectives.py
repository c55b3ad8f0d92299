"""Variational objectives, as pure functions of a :class:`~vaekit.networks.VAEModule` and data.

All values are per data point, in nats. Shapes: ``n`` examples, ``d`` data
dimensions, ``J`` latent dimensions, ``L`` (or ``k``) samples of z per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from vaekit.errors import VaekitError
from vaekit.likelihoods import LOG_2PI

if TYPE_CHECKING:
    from vaekit.config import TrainConfig
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
    mu: Tensor,
    logvar: Tensor,
    samples: int = 1,
    generator: torch.Generator | None = None,
    eps: Tensor | None = None,
) -> Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I): ``(samples, n, J)``, differentiable in mu and logvar.

    eps : optional ``(samples, n, J)`` standard normal draws to use instead of drawing them
        from ``generator`` (the trainer draws a whole minibatch's eps at once so that
        data-parallel processes use the same numbers as a single process would).
    """
    if eps is None:
        eps = torch.randn((samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


class Draw(NamedTuple):
    """One encoding of a minibatch and its samples of z, from which every objective is computed.

    The last three are set by models whose latent is not one layer under N(0, I)
    (:mod:`vaekit.hierarchy`); None means that model, whose terms are computed here from mu and logvar.
    """

    mu: Tensor  # (n, J) mean of q(z|x) (of the layer z_1 the decoder reads)
    logvar: Tensor  # (n, J) log-variance of q(z|x)
    z: Tensor  # (L, n, J) samples z ~ q(z|x)
    log_px_z: Tensor  # (L, n) log p(x|z), nats
    log_pz: Tensor | None = None  # (L, n) log p(z) of every stochastic layer, nats
    log_qz: Tensor | None = None  # (L, n) log q(z|x) of every stochastic layer, nats
    kl: Tensor | None = None  # (L, n) the KL term, in closed form where the model has one, else log q - log p


def draw(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None,
    samples: int,
    generator: torch.Generator | None,
    eps: Tensor | None = None,
) -> Draw:
    """Encode x ``(n, d)`` and draw z ``(L, n, J)`` from q(z|x), with log p(x|z) ``(L, n)``.

    A module with its own ``draw`` (:class:`vaekit.hierarchy.HierarchicalVAE`) draws itself.
    """
    if hasattr(module, "draw"):
        return module.draw(x, y, samples, generator, eps)
    mu, logvar = module.encode(x, y)  # (n, J) each
    z = reparameterize(mu, logvar, samples, generator, eps)  # (L, n, J)
    return Draw(mu, logvar, z, module.likelihood.log_prob(x, module.decode(z, y)))


def elbo_terms(d: Draw, estimator: str = "analytic") -> ELBOTerms:
    """The ELBO's terms of a :class:`Draw`: estimator 'analytic' (B: closed-form KL) or 'mc' (A)."""
    if d.kl is not None:  # a model with more layers or another prior: its own KL estimates
        kl = (d.kl if estimator == "analytic" else d.log_qz - d.log_pz).mean(0)  # type: ignore[operator]
    elif estimator == "analytic":
        kl = gaussian_kl(d.mu, d.logvar).sum(-1)
    else:
        kl = (log_normal(d.z, d.mu, d.logvar) - log_standard_normal(d.z)).mean(0)
    return ELBOTerms(recon=d.log_px_z.mean(0), kl=kl)


def elbo(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    samples: int = 1,
    estimator: str = "analytic",
    generator: torch.Generator | None = None,
    eps: Tensor | None = None,
) -> ELBOTerms:
    """SGVB estimate of the ELBO for each row of x ``(n, d)``.

    estimator 'analytic' is the paper's estimator B (closed-form KL, Monte Carlo
    reconstruction term); 'mc' is estimator A (every term by Monte Carlo:
    (1/L) sum_l log p(x, z_l) - log q(z_l|x)). Both are unbiased for the same ELBO.
    eps : optional ``(L, n, J)`` noise for :func:`reparameterize` (default: drawn from generator)
    """
    return elbo_terms(draw(module, x, y, samples, generator, eps), estimator)


def log_weights(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    k: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance log-weights log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x): ``(k, n)`` nats."""
    return importance_log_weights(draw(module, x, y, k, generator))


def importance_log_weights(d: Draw) -> Tensor:
    """log p(x, z_i) - log q(z_i|x) of a :class:`Draw`: ``(k, n)`` nats."""
    if d.log_pz is not None:
        return d.log_px_z + d.log_pz - d.log_qz  # type: ignore[operator]
    return d.log_px_z + log_standard_normal(d.z) - log_normal(d.z, d.mu, d.logvar)


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/k) sum_i p(x, z_i) / q(z_i|x) from the log-weights ``(k, n)`` of :func:`log_weights`:
    ``(n,)`` nats (Burda et al. 2015); k = 1 is the ELBO."""
    return torch.logsumexp(log_w, dim=0) - math.log(len(log_w))


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """KL weight at optimisation step ``step`` (0-based): beta * min(1, step / warmup_steps).

    Linear KL warm-up (Bowman et al. 2016; Sønderby et al. 2016); ``warmup_steps = 0`` is no warm-up.
    """
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def free_bits_kl(kl_per_dim: Tensor, floor: float) -> Tensor:
    """The free-bits KL term sum_j max(lambda, mean_n KL_nj), a scalar in nats (Kingma et al. 2016, eq. 15).

    kl_per_dim : (n, J) per-example, per-dimension KL. A dimension whose batch-mean KL is
    below the floor contributes exactly lambda and no gradient, so the optimiser gains
    nothing by pushing it further towards the prior.
    """
    return kl_per_dim.mean(0).clamp(min=floor).sum()


class TrainingObjective:
    """What the Trainer minimises: a registered entry of :data:`OBJECTIVES`."""

    def check(self, config: TrainConfig) -> str | None:
        """Why ``config`` cannot train this objective, or None."""
        return None

    def loss(self, d: Draw, config: TrainConfig, step: int = 0) -> tuple[Tensor, ELBOTerms]:
        """The scalar to minimise on the minibatch drawn in ``d`` at ``step``, and its ELBO terms."""
        raise NotImplementedError


class ELBOObjective(TrainingObjective):
    """The mean of beta_t * kl - recon, beta_t from :func:`beta_at` (KL warm-up; beta-VAE); with
    ``free_bits`` the KL term is :func:`free_bits_kl` of the closed-form KL."""

    def check(self, config: TrainConfig) -> str | None:
        if config.free_bits > 0 and config.estimator != "analytic":
            return "free_bits needs the 'analytic' estimator (closed-form KL)"
        return None

    def loss(self, d: Draw, config: TrainConfig, step: int = 0) -> tuple[Tensor, ELBOTerms]:
        beta = beta_at(step, config.beta, config.warmup_steps)
        if config.free_bits == 0:
            terms = elbo_terms(d, config.estimator)
            return terms.loss(beta), terms
        if d.kl is not None:
            raise VaekitError(
                "free_bits needs one stochastic layer and the 'normal' prior (a closed-form KL)"
            )
        kl_per_dim = gaussian_kl(d.mu, d.logvar)  # (m, J)
        terms = ELBOTerms(recon=d.log_px_z.mean(0), kl=kl_per_dim.sum(-1))
        return beta * free_bits_kl(kl_per_dim, config.free_bits) - terms.recon.mean(), terms


class IWAEObjective(TrainingObjective):
    """Minus the batch mean of the k-sample importance-weighted bound, k = ``config.samples``
    (Burda et al. 2015); its terms are the mean log p(x|z_i) and the closed-form KL."""

    def check(self, config: TrainConfig) -> str | None:
        if config.beta != 1 or config.warmup_steps or config.estimator != "analytic" or config.free_bits:
            return "objective 'iwae' needs beta 1, no warmup_steps, no free_bits and the 'analytic' estimator"
        return None

    def loss(self, d: Draw, config: TrainConfig, step: int = 0) -> tuple[Tensor, ELBOTerms]:
        return -iwae_bound(importance_log_weights(d)).mean(), elbo_terms(d, "analytic")


#: the training objectives by name (``TrainConfig.objective``)
OBJECTIVES: dict[str, TrainingObjective] = {"elbo": ELBOObjective(), "iwae": IWAEObjective()}


def training_loss(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None,
    config: TrainConfig,
    step: int = 0,
    generator: torch.Generator | None = None,
    eps: Tensor | None = None,
) -> tuple[Tensor, ELBOTerms]:
    """The loss of the registered objective ``config.objective`` on minibatch x ``(m, d)`` at
    ``step`` (see :meth:`TrainingObjective.loss`), and the batch's ELBO terms.

    eps : optional ``(samples, m, J)`` noise (default: drawn from generator), see :func:`reparameterize`
    """
    d = draw(module, x, y, config.samples, generator, eps)
    return OBJECTIVES[config.objective].loss(d, config, step)
