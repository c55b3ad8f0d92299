"""Per-column standardization of real-valued data for a likelihood on the real line.

A Gaussian decoder fitted to raw columns whose scales differ by orders of magnitude (a CSV of
measurements: areas near 10^3, fractal dimensions near 10^-2) starts far from the data, and its
encoder's first layer sees inputs of size 10^3: the KL term grows to 10^5 nats before the
reconstruction term catches up. Standardizing each column, u = (x - mean) / scale with the training
split's mean and standard deviation, puts every column near N(0, 1) where the default
initialisation and learning rate work.

The model is then p(u | z) on standardized data, and the density of the data in its own units
follows from the change of variables x = scale * u + mean (an affine map with Jacobian
determinant prod_j scale_j):

    log p(x | z) = log p(u | z) - sum_j log scale_j

so every log-likelihood, ELBO and importance-sampled log p(x) vaekit reports stays one of x, in
nats of the data's own units (:class:`Standardized` subtracts the log-determinant). A constant
column (standard deviation 0, or below float32's resolution of its values) gets scale 1: it is
only shifted to 0, its Jacobian is 1, and no division by (nearly) zero makes numbers that are not
finite.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vaekit.errors import VaekitError
from vaekit.likelihoods import LIKELIHOODS, Likelihood

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

#: a column whose standard deviation is at most this fraction of its mean's size is constant: below
#: float32's resolution (2^-23 = 1.2e-7) its spread is rounding, not data
CONSTANT_RESOLUTION = 1e-6
#: columns whose scales span more than this factor are "on wildly different scales" in the report
SCALE_SPREAD = 100.0
#: column numbers listed by name in the report (1-based), the rest counted
LISTED = 5


def applies(config: ModelConfig, images: bool) -> bool:
    """Whether a model standardizes its data: ``standardize`` 'on', or 'auto' with a likelihood on
    the real line (:attr:`Likelihood.real_line`) and data that are not images."""
    if config.standardize == "auto":
        return LIKELIHOODS[config.likelihood].real_line and not images
    return config.standardize == "on"


def decided(config: ModelConfig, standardized: bool) -> ModelConfig:
    """The config with ``standardize`` 'on' or 'off' as decided (by :func:`applies` for the data
    at fit time; from the run config's ``standardized`` at load time, so that a loaded model never
    guesses again whether its rows were images)."""
    return dataclasses.replace(config, standardize="on" if standardized else "off")


def check(config: ModelConfig) -> None:
    """VaekitError when ``standardize`` is 'on' for a likelihood whose support is not the real line."""
    if config.standardize == "on" and not LIKELIHOODS[config.likelihood].real_line:
        raise VaekitError(
            f"standardize 'on' needs a likelihood on the real line "
            f"({sorted(k for k, v in LIKELIHOODS.items() if v.real_line)}), not {config.likelihood!r}"
        )


@dataclass(frozen=True)
class ColumnStats:
    """Per-column statistics of training rows, float64.

    mean, scale : ``(d,)``; scale is the standard deviation (population, ddof 0), 1 where constant
    constant : ``(d,)`` bool, columns whose spread is no more than rounding
    """

    mean: Tensor
    scale: Tensor
    constant: Tensor

    @classmethod
    def of(cls, x: Tensor) -> ColumnStats:
        """The statistics of rows x ``(n, d)``."""
        x64 = x.double()
        mean = x64.mean(0)
        std = x64.std(0, correction=0) if len(x64) > 1 else torch.zeros_like(mean)
        constant = std <= CONSTANT_RESOLUTION * mean.abs()
        return cls(mean, torch.where(constant, torch.ones_like(std), std), constant)

    def describe(self, standardized: bool) -> str:
        """One line for the data summary: the scales of the columns, and which are constant."""
        varying = self.scale[~self.constant]
        lo, hi = (float(varying.min()), float(varying.max())) if len(varying) else (1.0, 1.0)
        where = (self.constant.nonzero().flatten() + 1).tolist()
        cols = ", ".join(map(str, where[:LISTED])) + (", ..." if len(where) > LISTED else "")
        const = f"; {len(where)} constant column{'s' * (len(where) != 1)} (col {cols})" if where else ""
        scales = f"scales from {lo:.3g} to {hi:.3g}"
        if standardized:
            return f"standardized {len(self.scale)} columns; {scales}{const}"
        return (
            f"not standardized: column {scales}{const}; a Gaussian decoder on raw columns this far "
            "apart may not train (--standardize auto)"
        )


def raw_scale(config: ModelConfig, x: Tensor, images: bool) -> float | None:
    """The largest column standard deviation of training rows x ``(n, d)`` when a real-line
    likelihood models them unstandardized (``standardize`` off, or images), else None."""
    if applies(config, images) or not LIKELIHOODS[config.likelihood].real_line:
        return None
    return float(ColumnStats.of(x).scale.max())


def report(config: ModelConfig, x: Tensor, images: bool) -> str | None:
    """The data summary's line on the column scales of training rows x ``(n, d)``: the
    standardization, or real-valued columns left raw on scales that span more than
    :data:`SCALE_SPREAD` (else None)."""
    if applies(config, images):
        return ColumnStats.of(x).describe(standardized=True)
    if raw_scale(config, x, images) is None:
        return None
    stats = ColumnStats.of(x)
    varying = stats.scale[~stats.constant]
    if len(varying) and float(varying.max()) > SCALE_SPREAD * float(varying.min()):
        return stats.describe(standardized=False)
    return None


class Standardizer(nn.Module):
    """u = (x - mean) / scale per column; mean and scale are buffers (saved with the weights).

    Parameters
    ----------
    data_dim : d; until :meth:`fit` the map is the identity (mean 0, scale 1)
    """

    def __init__(self, data_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(data_dim))
        self.register_buffer("scale", torch.ones(data_dim))

    def fit(self, x: Tensor) -> ColumnStats:
        """Take mean and scale from training rows x ``(n, d)`` (:class:`ColumnStats`); returns them."""
        stats = ColumnStats.of(x)
        with torch.no_grad():
            self.mean.copy_(stats.mean)
            self.scale.copy_(stats.scale)
        return stats

    def forward(self, x: Tensor) -> Tensor:
        """x ``(..., d)`` in the data's units -> standardized u ``(..., d)``."""
        return (x - self.mean) / self.scale

    def inverse(self, u: Tensor) -> Tensor:
        """Standardized u ``(..., d)`` -> x = scale * u + mean in the data's units."""
        return torch.addcmul(self.mean, u, self.scale)

    def log_det(self) -> Tensor:
        """log |det dx/du| = sum_j log scale_j, a scalar in nats."""
        return self.scale.log().sum()


class Standardized(Likelihood):
    """A real-line likelihood ``base`` of standardized data u = scaler(x), seen from x.

    log p(x | z) = log p_base(scaler(x) | z) - scaler.log_det() (change of variables); the mean and
    draws of the base family are mapped back to the data's units.
    """

    real_line = True

    def __init__(self, base: Likelihood, scaler: Standardizer) -> None:
        self.base, self.scaler = base, scaler
        self.params_per_dim = base.params_per_dim

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return self.base.log_prob(self.scaler(x), params) - self.scaler.log_det()

    def mean(self, params: Tensor) -> Tensor:
        return self.scaler.inverse(self.base.mean(params))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.scaler.inverse(self.base.sample(params, generator))

    def check_data(self, x: Tensor) -> str | None:
        return self.base.check_data(x)
