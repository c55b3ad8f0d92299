"""The discretized mixture of logistics for 8-bit colour pixels (Salimans et al. 2017, PixelCNN++).

Each pixel of C channels, values x_c = v_c / 255, v_c in {0..255}, has K mixture components
sharing one choice k for all its channels:

    P(x) = sum_k pi_k prod_c P(x_c | m_kc(x_<c), s_kc),
    m_kc = mu_kc + sum_{c' < c} a_kcc' x_c'        (for RGB: m_g = mu_g + a_rg r,
                                                        m_b = mu_b + a_rb r + a_gb g)

where P(x_c | m, s) is a logistic with location m and scale s integrated over the value's bin
(:func:`vaekit.likelihoods.log_bin_probs`), the coupling uses the pixel's actual values of the
earlier channels, and a_kcc' = tanh(.) lies in (-1, 1). Pixels are independent given z. On
values in [0, 1] (PixelCNN++ rescales them to [-1, 1]; the shift is absorbed in mu).

Decoder outputs per pixel, each a block of H * W numbers (parameter-major, see
:mod:`vaekit.likelihoods`), in this order: K logits of pi; C x K locations mu (channel-major);
C x K log-scales; C(C-1)/2 x K coupling pre-activations, pairs (c, c') ordered (1, 0), (2, 0),
(2, 1), ... For RGB that is 10 K numbers a pixel; for grey levels 3 K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from vaekit import limits
from vaekit.errors import VaekitError
from vaekit.likelihoods import LIKELIHOODS, Likelihood, check_8bit, log_bin_probs, sample_bins

NAME = "discretized_logistic_mixture"

#: (locations m_c, values v_c) of a pixel's channels in order
Channels = tuple[list[Tensor], list[Tensor]]


class DiscretizedLogisticMixture(Likelihood):
    """K logistic components per pixel, coupled across its C channels; a probability of 8-bit values.

    Parameters
    ----------
    components : K, mixture components per pixel (a whole number up to limits.MAX_COMPONENTS)
    """

    discrete = True
    options: ClassVar[dict[str, tuple[float, str]]] = {
        "components": (10, "mixture components K per pixel of discretized_logistic_mixture")
    }

    def __init__(self, components: float = 10) -> None:
        if components != int(components) or not 1 <= components <= limits.MAX_COMPONENTS:
            raise VaekitError(
                f"likelihood_options: components must be a whole number from 1 to {limits.MAX_COMPONENTS} "
                f"(limits.MAX_COMPONENTS), got {components!r}"
            )
        self.components = int(components)

    @property
    def pairs(self) -> int:
        """Coupling coefficients per component: one for each channel pair c' < c."""
        return self.channels * (self.channels - 1) // 2

    @property
    def params_per_pixel(self) -> int:
        return self.components * (1 + 2 * self.channels + self.pairs)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """params ``(..., n, params_per_pixel * H*W)`` -> logits ``(..., n, K, H*W)``, locations and
        log-scales ``(..., n, C, K, H*W)``, coupling coefficients in (-1, 1) ``(..., n, pairs, K, H*W)``."""
        k, c = self.components, self.channels
        p = params.unflatten(-1, (self.params_per_pixel, -1))
        logits, mu, log_s, coupling = p.split([k, c * k, c * k, self.pairs * k], dim=-2)
        mu, log_s, coupling = (t.unflatten(-2, (-1, k)) for t in (mu, log_s, torch.tanh(coupling)))
        return logits, mu, log_s, coupling

    def _channels(self, mu: Tensor, coupling: Tensor, value: Callable[[int, Tensor], Tensor]) -> Channels:
        """Walk the channels in order: m_c = mu_c + sum_{c' < c} a_cc' v_c', then v_c = value(c, m_c).

        mu ``(..., C, K, H*W)``, coupling ``(..., pairs, K, H*W)``; each m_c and v_c ``(..., K, H*W)``.
        """
        locations: list[Tensor] = []
        values: list[Tensor] = []
        pair = 0
        for c in range(self.channels):
            m = mu[..., c, :, :]
            for earlier in values:
                m = m + coupling[..., pair, :, :] * earlier
                pair += 1
            locations.append(m)
            values.append(value(c, m))
        return locations, values

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        logits, mu, log_s, coupling = self._split(params)
        pixels = x.unflatten(-1, (self.channels, 1, -1))  # (n, C, 1, H*W): broadcasts over K
        locations, _ = self._channels(mu, coupling, lambda c, m: pixels[..., c, :, :])
        log_p = F.log_softmax(logits, dim=-2)  # (..., n, K, H*W)
        for c, m in enumerate(locations):
            log_p = log_p + log_bin_probs(pixels[..., c, :, :], m, log_s[..., c, :, :])
        return torch.logsumexp(log_p, dim=-2).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        """E[x] = sum_k pi_k E[x | k] of the logistics before discretization, clamped to [0, 1].

        The coupling is linear, so E[x_c | k] = mu_kc + sum_{c' < c} a_kcc' E[x_c' | k] exactly;
        the mass the edge bins collect beyond [0, 1] is ignored, as in DiscretizedLogistic.mean.
        """
        logits, mu, _, coupling = self._split(params)
        _, means = self._channels(mu, coupling, lambda c, m: m)
        pi = torch.softmax(logits, dim=-2)
        return torch.stack([(pi * m).sum(-2) for m in means], dim=-2).flatten(-2).clamp(0.0, 1.0)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw per pixel: the component k ~ pi (Gumbel-max), then its channels in order, each
        an 8-bit value from the logistic located by the values drawn before it."""
        logits, mu, log_s, coupling = self._split(params)
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        k = (logits - torch.log(-torch.log(u))).argmax(dim=-2, keepdim=True)  # (..., n, 1, H*W)
        chosen = k.unsqueeze(-3)  # (..., n, 1, 1, H*W): the same k for every channel
        mu, log_s, coupling = (torch.take_along_dim(t, chosen, dim=-2) for t in (mu, log_s, coupling))
        draw = lambda c, m: sample_bins(m, log_s[..., c, :, :], generator)  # noqa: E731
        _, values = self._channels(mu, coupling, draw)
        return torch.cat(values, dim=-2).flatten(-2)

    def check_data(self, x: Tensor) -> str | None:
        return check_8bit(x, NAME)


LIKELIHOODS[NAME] = DiscretizedLogisticMixture
