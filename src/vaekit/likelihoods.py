"""Observation models p(x|z): the decoder's output parameters turned into a likelihood.

Every likelihood takes the decoder output ``params`` of shape ``(..., n, k * d)``
(``k = params_per_dim`` numbers per data dimension) and data ``x`` of shape
``(n, d)``, and returns per-example values summed over the ``d`` dimensions, in
nats. Leading sample dimensions of ``params`` broadcast against ``x``.

Images are rows of ``d = C * H * W`` values in (C, H, W) order. A family that models the C
values of a pixel jointly (:class:`~vaekit.logistic_mixture.DiscretizedLogisticMixture`) is told
C (:attr:`Likelihood.channels`) and takes ``params_per_pixel`` numbers for each of the H * W
pixels, parameter-major again: ``(..., n, params_per_pixel * H * W)``. For the other families a
pixel's numbers are their ``params_per_dim`` for each channel, the same layout.

Add a likelihood by subclassing :class:`Likelihood` and registering it in
:data:`LIKELIHOODS`; no other module branches on likelihood names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from vaekit.errors import VaekitError

LOG_2PI = math.log(2.0 * math.pi)

#: what log p(x | z), summed over dimensions, is on given targets (:meth:`Likelihood.measure`):
#: a log-probability of the data (a code length: nats, or bits per dimension), a log-density
#: (nats, which depend on the data's scale), or minus a cross-entropy of targets the family gives
#: no probability to (grey levels under a Bernoulli): no likelihood of the data at all
MEASURES = LOG_PROBABILITY, LOG_DENSITY, CROSS_ENTROPY = ("log_probability", "log_density", "cross_entropy")


class Likelihood:
    """Base class: a family p(x | params) with params produced by the decoder."""

    #: decoder outputs per data dimension
    params_per_dim: int = 1
    #: the options of the family (the config's ``likelihood_options``): name -> (default, what it is);
    #: every option is a positive finite number
    options: ClassVar[dict[str, tuple[float, str]]] = {}
    #: a probability mass over a finite set of values per dimension (True), or a density (False)
    discrete: bool = False
    #: a density on the whole real line per dimension: real-valued data may be standardized for it
    #: (:mod:`vaekit.scaling`, ``standardize`` in the config)
    real_line: bool = False
    #: values of one pixel: the images' C (set by :meth:`from_options`), 1 for data that are not images
    channels: int = 1

    @property
    def params_per_pixel(self) -> int:
        """Decoder outputs per pixel of :attr:`channels` values: params_per_dim for each channel,
        unless the family models a pixel's channels jointly."""
        return self.params_per_dim * self.channels

    @classmethod
    def from_options(cls, options: Mapping[str, object] | None = None, channels: int = 1) -> Likelihood:
        """Build from ``likelihood_options``: the family's own options, defaults for the ones left out.

        An option the family does not take, or a value that is not a positive finite number, is a
        VaekitError naming it. ``channels`` is C of the images the family will model (1 otherwise).
        """
        given = dict(options or {})
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            takes = sorted(cls.options) or "none"
            raise VaekitError(
                f"likelihood_options: {unknown} are not options of {cls.__name__} (it takes {takes})"
            )
        values = {}
        for name, (default, _) in cls.options.items():
            value = given.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise VaekitError(
                    f"likelihood_options: {name} must be a positive finite number, got {value!r}"
                )
            values[name] = float(value)
        likelihood = cls(**values)
        likelihood.channels = channels
        return likelihood

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | params) summed over dimensions: ``(..., n)`` nats."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """E[x | params], shape ``(..., n, d)``."""
        raise NotImplementedError

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw x ~ p(x | params), shape ``(..., n, d)``."""
        raise NotImplementedError

    def check_data(self, x: Tensor) -> str | None:
        """Return why ``x`` is outside this likelihood's support, or None if it is fine."""
        return None

    def in_support(self, x: Tensor) -> bool:
        """Whether every value of x ``(n, d)`` is one this family gives probability (or density) to."""
        return self.check_data(x) is None

    def measure(self, x: Tensor) -> str:
        """What :meth:`log_prob` is on the targets x ``(n, d)``: one of :data:`MEASURES`.

        A discrete family on values it gives probability to: a log-probability; a density: a
        log-density; a discrete family on other values (grey levels under a Bernoulli): minus a
        cross-entropy, which is not a likelihood of x.
        """
        if not self.discrete:
            return LOG_DENSITY
        return LOG_PROBABILITY if self.in_support(x) else CROSS_ENTROPY


class Bernoulli(Likelihood):
    """Bernoulli pixels from logits: log p = sum_i x_i l_i - softplus(l_i).

    This equals sum_i x_i log y_i + (1 - x_i) log(1 - y_i) with y = sigmoid(l),
    computed from the logits so that it never takes log(0). Targets may be binary
    or anywhere in [0, 1]; with grey-level targets (as in pytorch/examples) the
    value is a cross-entropy, not a normalised log-likelihood of the pixels.
    """

    discrete = True

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        # sum_i x_i l_i as one dot product per row, no (..., n, d) temporary
        # (2500 x 784 logits: 2.5 ms instead of 3.4 ms)
        return torch.linalg.vecdot(params, x) - F.softplus(params).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)

    def check_data(self, x: Tensor) -> str | None:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            return (
                f"values range over [{lo:g}, {hi:g}] but the bernoulli likelihood needs [0, 1]; "
                "rescale the data or choose likelihood 'gaussian'"
            )
        return None

    def in_support(self, x: Tensor) -> bool:
        """True when every value is 0 or 1: grey levels in between are trainable targets, not outcomes."""
        return bool(((x == 0) | (x == 1)).all())


class Gaussian(Likelihood):
    """Diagonal Gaussian with mean and log-variance both from the decoder (the paper's Gaussian MLP).

    params = [mu, logvar] along the last dimension; logvar is clamped to
    ``LOGVAR_RANGE`` so that a collapsing variance cannot produce inf.
    """

    params_per_dim = 2
    real_line = True
    LOGVAR_RANGE = (-12.0, 8.0)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = params.chunk(2, dim=-1)
        return mu, logvar.clamp(*self.LOGVAR_RANGE)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        mu, logvar = self._split(params)
        return -0.5 * (LOG_2PI + logvar + (x - mu).square() * torch.exp(-logvar)).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        return self._split(params)[0]

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mu, logvar = self._split(params)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps


class GaussianFixed(Likelihood):
    """Gaussian with a fixed scalar standard deviation: p(x|z) = N(f(z), sigma^2 I) (Doersch, 2016).

    log p(x|z) = -||x - f(z)||^2 / (2 sigma^2) - (d / 2) log(2 pi sigma^2).
    The familiar "squared error + KL" loss is this model up to the weight
    1 / (2 sigma^2) and the constant; vaekit keeps both so that the number it
    reports is a true log-likelihood in nats.
    """

    options: ClassVar[dict[str, tuple[float, str]]] = {
        "sigma": (1.0, "standard deviation of gaussian_fixed (of standardized columns when standardizing)")
    }
    real_line = True

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = sigma

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        d = x.shape[-1]
        sq = (x - params).square().sum(-1)
        return -0.5 * sq / self.sigma**2 - 0.5 * d * (LOG_2PI + 2.0 * math.log(self.sigma))

    def mean(self, params: Tensor) -> Tensor:
        return params

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(params.shape, generator=generator, dtype=params.dtype, device=params.device)
        return params + self.sigma * eps


#: half the width of an 8-bit value's bin on [0, 1]: the values are v / 255, v in {0..255}
HALF_BIN = 0.5 / 255.0
#: logistic scales of the discretized families are at least e^-7, far below a bin: 1 / s stays finite
LOG_S_MIN = -7.0


def log_bin_probs(x: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """log P(v) of 8-bit values x = v / 255 under logistics (mu, exp(log_s)), each integrated over
    its value's bin; elementwise (broadcasting), nats.

    P(v) = sigmoid((x + h - mu) / s) - sigmoid((x - h - mu) / s), h = 1/510; the edge bins v = 0 and
    v = 255 take the tails down to -inf and up to +inf, so the 256 probabilities sum to 1. The
    difference is taken as a product, sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a)),
    which is accurate in float32 however far x is in the tails and however narrow or wide the
    logistic, so no mid-bin density approximation (as PixelCNN++ uses where the difference underflows)
    is needed. log_s is clamped to at least :data:`LOG_S_MIN`.
    """
    inv_s = torch.exp(-log_s.clamp(min=LOG_S_MIN))
    upper = inv_s * (x - mu + HALF_BIN)
    lower = inv_s * (x - mu - HALF_BIN)
    log_cdf_upper = -F.softplus(-upper)  # log sigmoid(upper): the v = 0 bin
    log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(lower)): the v = 255 bin
    log_mid = log_cdf_upper + log_sf_lower + torch.log(-torch.expm1(lower - upper))
    log_p = torch.where(x > 1 - HALF_BIN, log_sf_lower, log_mid)
    return torch.where(x < HALF_BIN, log_cdf_upper, log_p)


def sample_bins(mu: Tensor, log_s: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One 8-bit value v / 255 per element from logistics (mu, exp(log_s)) rounded to the nearest
    value (the edge values take the tails): draws from :func:`log_bin_probs`."""
    u = torch.rand(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device).clamp(1e-6, 1 - 1e-6)
    x = mu + log_s.clamp(min=LOG_S_MIN).exp() * (torch.log(u) - torch.log1p(-u))
    return (x.clamp(0.0, 1.0) * 255).round() / 255


def check_8bit(x: Tensor, name: str) -> str | None:
    """Why x is not 8-bit values v / 255 in [0, 1] (the likelihood ``name`` needs them), or None."""
    lo, hi = float(x.min()), float(x.max())
    off_grid = float((x * 255 - (x * 255).round()).abs().max())
    if lo < 0.0 or hi > 1.0 or off_grid > 1e-3:
        return (
            f"the {name} likelihood needs 8-bit values v / 255 in [0, 1]; "
            f"got values in [{lo:g}, {hi:g}], up to {off_grid:.3g} of a level off the 1/255 grid"
        )
    return None


class DiscretizedLogistic(Likelihood):
    """8-bit pixels x = v / 255, v in {0..255}: a logistic density integrated over each value's bin.

    params = [mu, log_s] along the last dimension (Salimans et al. 2017, PixelCNN++, one
    component); P(v) is :func:`log_bin_probs`, the 256 probabilities sum to 1, and log p(x|z) is a
    discrete log-probability: divided by d log 2 it is bits per dimension.
    """

    discrete = True
    params_per_dim = 2

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return log_bin_probs(x, *params.chunk(2, dim=-1)).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        """The location mu clamped to [0, 1] (the logistic's mean, ignoring the edge bins' mass)."""
        return params.chunk(2, dim=-1)[0].clamp(0.0, 1.0)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return sample_bins(*params.chunk(2, dim=-1), generator)

    def check_data(self, x: Tensor) -> str | None:
        return check_8bit(x, "discretized_logistic")


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "gaussian_fixed": GaussianFixed,
    "discretized_logistic": DiscretizedLogistic,
}


def make_likelihood(name: str, options: Mapping[str, object] | None = None, channels: int = 1) -> Likelihood:
    """Build a registered likelihood by name with its ``options`` (see :attr:`Likelihood.options`),
    for images of ``channels`` channels (1: data that are not images)."""
    if name not in LIKELIHOODS:
        raise VaekitError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name].from_options(options, channels)


# the families defined in modules of their own register themselves here, with the registry
from vaekit import logistic_mixture  # noqa: E402, F401  ('discretized_logistic_mixture')
