"""VAEs with stochastic layers above z, a prior other than N(0, I), or both.

The model of Burda et al. (2015, section 5) with L stochastic layers z_1 (the ``latent_dim``
units the decoder reads) ... z_L (``upper_latents``):

    q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1})          (inference)
    p(z_L) p(z_{L-1}|z_L) ... p(z_1|z_2) p(x|z_1)    (generation)

x <-> z_1 are the config's encoder/decoder (``arch``, ``hidden``); each conditional Gaussian
between two stochastic layers is an MLP of ``upper_hidden`` widths (mirrored for p). The top
prior p(z_L) comes from :data:`vaekit.priors.PRIORS` (N(0, I), or the VampPrior of Tomczak &
Welling 2018, whose components are q(z_L|z_{L-1}) at the means of the lower posteriors of each
pseudo-input: for L = 2, q(z_2 | z_1 = E_q[z_1|u_k])). The one-layer model with N(0, I) is
:class:`vaekit.networks.VAEModule` itself (:func:`make_module` builds it as before).

Shapes: ``n`` examples, ``L`` samples, ``J_l`` units of layer l, ``J = sum_l J_l`` (the noise of one draw).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vaekit.networks import GaussianEncoder, VAEModule
from vaekit.objectives import Draw, log_normal, reparameterize
from vaekit.priors import make_prior

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

#: draws of z per example with which :meth:`HierarchicalVAE.layer_usage` estimates E_q[z_l|x] and the KLs
USAGE_SAMPLES = 16
#: floats of one pass of :meth:`HierarchicalVAE.layer_usage` (samples x rows x components x units)
USAGE_CHUNK = 2**22

Link = tuple[Tensor, Tensor, Tensor]  # z (L, n, J_l) ~ q, and the mu, logvar of q it was drawn from


class HierarchicalVAE(VAEModule):
    """A :class:`VAEModule` with stochastic layers ``config.upper_latents`` above z_1 and the prior
    ``config.prior`` on the top one (see the module's docstring); same constructor."""

    def __init__(
        self,
        data_dim: int,
        config: ModelConfig,
        cond_dim: int = 0,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(data_dim, config, cond_dim, image_shape)
        sizes = (config.latent_dim, *config.upper_latents)  # J_1 ... J_L
        hidden, act = tuple(config.upper_hidden), config.activation
        pairs = list(itertools.pairwise(sizes))
        self.up = nn.ModuleList(GaussianEncoder(a, hidden, b, act) for a, b in pairs)  # q(z_l+1|z_l)
        self.down = nn.ModuleList(GaussianEncoder(b, hidden[::-1], a, act) for a, b in pairs)  # p(z_l|z_l+1)
        self.prior = make_prior(config.prior, sizes[-1], data_dim, config.prior_options)
        self.latent_sizes = sizes
        self.noise_dim = sum(sizes)
        self.decode_floats = max(self.decode_floats, *hidden, getattr(self.prior, "floats_per_sample", 0))

    def top_posterior(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Data rows u ``(K, d)`` -> mu, logvar ``(K, J_L)`` of the top layer's q, each lower layer
        taken at its posterior mean (the VampPrior's components)."""
        mu, logvar = self.encode(u)
        for q in self.up:
            mu, logvar = q(mu)
        return mu, logvar

    def posterior_chain(self, x: Tensor, y: Tensor | None, eps: Tensor) -> list[Link]:
        """z_1 ~ q(z_1|x), z_2 ~ q(z_2|z_1), ... from the noise eps ``(L, n, J)``: one link per layer."""
        mu, logvar = self.encode(x, y)  # (n, J_1) each
        chain: list[Link] = []
        for noise, q in zip(eps.split(self.latent_sizes, dim=-1), (None, *self.up), strict=True):
            if q is not None:
                mu, logvar = q(chain[-1][0])  # (L, n, J_l) each
            chain.append((reparameterize(mu, logvar, eps=noise), mu, logvar))
        return chain

    def _noise(self, x: Tensor, samples: int, generator: torch.Generator | None) -> Tensor:
        return torch.randn(
            (samples, len(x), self.noise_dim), generator=generator, dtype=x.dtype, device=x.device
        )

    def draw(
        self,
        x: Tensor,
        y: Tensor | None,
        samples: int,
        generator: torch.Generator | None,
        eps: Tensor | None = None,
    ) -> Draw:
        """Encode x ``(n, d)``, draw every layer (eps ``(L, n, J)`` or from generator), and score it:
        a :class:`Draw` with log p(z) and log q(z|x) of all layers, and the KL term with the top
        layer's in closed form where the prior has one (the lower layers' by Monte Carlo)."""
        chain = self.posterior_chain(x, y, self._noise(x, samples, generator) if eps is None else eps)
        log_q = [log_normal(*link) for link in chain]  # (L, n) each
        log_p = [
            log_normal(z, *p(above[0]))
            for (z, _, _), p, above in zip(chain, self.down, chain[1:], strict=False)
        ]
        top, mu_top, logvar_top = chain[-1]
        log_qz = torch.stack(log_q).sum(0)
        log_pz = self.prior.log_prob(top, self.top_posterior) + sum(log_p)
        closed = self.prior.kl(mu_top, logvar_top)
        if closed is None:
            kl = log_qz - log_pz
        else:
            kl = (closed + sum(q - p for q, p in zip(log_q, log_p, strict=False))).expand(log_qz.shape)
        z, mu, logvar = chain[0]
        log_px_z = self.likelihood.log_prob(x, self.decode(z, y))
        return Draw(mu, logvar, z, log_px_z, log_pz=log_pz, log_qz=log_qz, kl=kl)

    @torch.no_grad()
    def sample_latent(self, n: int, generator: torch.Generator) -> Tensor:
        """z_1 ``(n, J_1)`` drawn ancestrally, z_L ~ p(z_L), z_l ~ p(z_l|z_l+1); on the generator's device."""
        device = next(self.parameters()).device
        z = self.prior.sample(n, self.top_posterior, generator)
        for p in reversed(self.down):
            mu, logvar = p(z.to(device))
            eps = torch.randn(mu.shape, generator=generator, device=generator.device)
            z = mu + torch.exp(0.5 * logvar) * eps.to(mu.device)
        return z.to(generator.device)

    @torch.no_grad()
    def layer_usage(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None = None
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per layer: E_q[z_l|x] ``(n, J_l)``, the per-unit KL terms ``(n, J_l)`` and the layer's KL
        ``(n,)``, each averaged over :data:`USAGE_SAMPLES` draws.

        A lower layer's KL is E_q[log q(z_l|z_l-1) - log p(z_l|z_l+1)], which splits over units (both
        are diagonal); the top layer's per-unit terms are :meth:`kl_dims` of its prior.
        """
        rows = max(
            1, USAGE_CHUNK // (USAGE_SAMPLES * getattr(self.prior, "floats_per_sample", 1) * self.noise_dim)
        )
        parts = [
            self._usage(xb, y[i : i + rows] if y is not None else None, generator)
            for i, xb in zip(range(0, len(x), rows), x.split(rows), strict=True)
        ]
        return [tuple(torch.cat(p) for p in zip(*layer, strict=True)) for layer in zip(*parts, strict=True)]  # type: ignore[misc]

    def _usage(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        chain = self.posterior_chain(x, y, self._noise(x, USAGE_SAMPLES, generator))
        out = []
        for i, (z, mu, logvar) in enumerate(chain):
            if i + 1 < len(chain):
                p_mu, p_logvar = self.down[i](chain[i + 1][0])
                # per-unit log densities: log_normal over a last axis of size 1
                dims = log_normal(z[..., None], mu[..., None], logvar[..., None]) - log_normal(
                    z[..., None], p_mu[..., None], p_logvar[..., None]
                )
                total = dims.sum(-1)
            else:
                dims = self.prior.kl_dims(z, mu, logvar, self.top_posterior).expand(z.shape)
                closed = self.prior.kl(mu, logvar)
                if closed is None:
                    closed = log_normal(z, mu, logvar) - self.prior.log_prob(z, self.top_posterior)
                total = closed.expand(z.shape[:-1])
            out.append((mu.expand(z.shape).mean(0), dims.mean(0), total.mean(0)))
        return out


def make_module(
    data_dim: int, config: ModelConfig, cond_dim: int = 0, image_shape: Sequence[int] | None = None
) -> VAEModule:
    """The module of ``config``: a :class:`HierarchicalVAE` when it has layers above z or a prior other
    than N(0, I), else the one-layer :class:`VAEModule` (its numbers exactly as they always were)."""
    plain = not config.upper_latents and config.prior == "normal"
    return (VAEModule if plain else HierarchicalVAE)(data_dim, config, cond_dim, image_shape)
