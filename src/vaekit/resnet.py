"""Residual convolutional encoder and decoder for natural images (arch 'resnet').

The encoder halves the image ``levels`` times, each halving followed by ``blocks`` residual
blocks; the decoder mirrors it. Shapes for ``(C, H, W)`` images, ``w = width``, ``L = levels``,
``(h, v) = (H / 2^L, W / 2^L)``::

    encoder  (n, C, H, W) -> stem 3x3 -> (n, w, H, W)
             L x [3x3 stride 2, blocks x residual]    -> (n, w, h, v)   the grid
    decoder  the grid (n, w, h, v)
             L x [blocks x residual, nearest x2, 3x3] -> (n, w, H, W)
             -> 1x1 -> (n, k, H, W)                    k = the likelihood's params_per_pixel

The latent z sits on the grid in one of two ways (``latent``, :data:`LATENTS`):

- ``'flat'``: z is a vector of latent_dim units; the flattened grid (and the condition y) go
  through MLP heads of the config's ``hidden`` widths, as in arch 'conv';
- ``'grid'``: z is latent_dim / (h v) maps on the grid, from 1x1 convolutions of the grid (and of
  y, as constant maps); the decoder takes z (and y) back with a 3x3 convolution; ``hidden`` is unused.

A residual block is ``x + conv(act(conv(act(x))))`` with 3x3 convolutions (pre-activation,
He et al. 2016), the second one's gain zero at initialisation, so every block starts as the
identity and depth does not blow up the initial activations (Zhang et al. 2019; VDVAE, Child 2021,
zeroes its blocks' last layers the same way). Every convolution is weight-normalized (Salimans &
Kingma 2016), as the residual networks of IAF-VAE (Kingma et al. 2016) are, not batch-normalized:
batch norm makes an example's output depend on the others in its minibatch, so training and
evaluation would compute different functions and the importance-sampled log-likelihood of one
example would depend on which examples share its pass. Weight normalization, like group norm,
keeps each example's computation its own; unlike group norm it does not divide out each example's
feature scale, which in the decoder would discard how strongly z asks for a feature.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vaekit import layout, limits
from vaekit.errors import VaekitError
from vaekit.networks import (
    ACTIVATIONS,
    LOGVAR_RANGE,
    ConvDecoder,
    ConvEncoder,
    Decoder,
    GaussianEncoder,
    NetworkSpec,
    register_architecture,
)

NAME = "resnet"


class WNConv2d(nn.Conv2d):
    """A convolution with weight normalization: filter o is gain_o v_o / ||v_o|| (Salimans & Kingma 2016).

    'same' padding for odd kernels; ``zero_gain`` starts the output at the bias alone (zero).
    """

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int = 1, zero_gain: bool = False) -> None:
        super().__init__(n_in, n_out, kernel, stride=stride, padding=kernel // 2)
        self.gain = nn.Parameter(torch.full((n_out, 1, 1, 1), 0.0 if zero_gain else 1.0))
        if zero_gain:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(self.weight, dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(x, self.weight * (self.gain / norm), self.bias)


class ResidualBlock(nn.Module):
    """x + conv3x3(act(conv3x3(act(x)))), the identity at initialisation; ``(n, w, h, v)`` to the same."""

    def __init__(self, width: int, activation: str) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.branch = nn.Sequential(
            act(), WNConv2d(width, width, 3), act(), WNConv2d(width, width, 3, zero_gain=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _blocks(width: int, blocks: int, activation: str) -> list[nn.Module]:
    return [ResidualBlock(width, activation) for _ in range(blocks)]


class ResNetFeatures(nn.Module):
    """Image rows ``(n, C*H*W)`` -> the grid ``(n, width * h * v)``, flattened (C, H, W)-wise."""

    def __init__(
        self, image_shape: tuple[int, ...], width: int, blocks: int, levels: int, activation: str
    ) -> None:
        super().__init__()
        self.image_shape = image_shape
        layers: list[nn.Module] = [WNConv2d(image_shape[0], width, 3)]
        for _ in range(levels):
            layers += [WNConv2d(width, width, 3, stride=2), *_blocks(width, blocks, activation)]
        self.net = nn.Sequential(*layers, ACTIVATIONS[activation]())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(layout.images(x, self.image_shape)).flatten(1)


class ResNetOutput(nn.Module):
    """The grid ``(..., n, width * h * v)`` -> parameters ``(..., n, k * H*W)``, parameter-major."""

    def __init__(
        self,
        image_shape: tuple[int, ...],
        params_per_pixel: int,
        width: int,
        blocks: int,
        levels: int,
        activation: str,
    ) -> None:
        super().__init__()
        _, height, breadth = image_shape
        self.grid = (width, height >> levels, breadth >> levels)
        layers: list[nn.Module] = []
        for _ in range(levels):
            layers += [
                *_blocks(width, blocks, activation),
                nn.Upsample(scale_factor=2),
                WNConv2d(width, width, 3),
            ]
        self.net = nn.Sequential(*layers, ACTIVATIONS[activation](), WNConv2d(width, params_per_pixel, 1))
        #: floats per sample of the widest maps: full-resolution features or the parameters
        self.widest = max(width, params_per_pixel) * height * breadth

    def forward(self, h: Tensor) -> Tensor:
        return self.net(layout.images(h, self.grid)).reshape(*h.shape[:-1], -1)


def _condition_maps(maps: Tensor, y: Tensor | None) -> Tensor:
    """Append the condition y ``(m, c)`` to maps ``(m, w, h, v)`` as c constant maps."""
    if y is None:
        return maps
    joined = torch.cat([maps, y[:, :, None, None].expand(-1, -1, *maps.shape[2:])], dim=1)
    return layout.images(joined, joined.shape[1:])  # torch.cat of these returns NCHW


class GridEncoderHead(nn.Module):
    """The grid ``(n, w*h*v)`` and y ``(n, c)`` -> mu, logvar ``(n, z*h*v)``: z maps by a 1x1 convolution."""

    def __init__(self, grid: tuple[int, int, int], z_maps: int, cond_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.conv = WNConv2d(grid[0] + cond_dim, 2 * z_maps, 1)

    def forward(self, h: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.conv(_condition_maps(layout.images(h, self.grid), y)).chunk(2, dim=1)
        return mu.flatten(1), logvar.flatten(1).clamp(*LOGVAR_RANGE)


class GridDecoderHead(nn.Module):
    """z ``(..., n, z*h*v)`` and y ``(n, c)`` -> the grid ``(..., n, w*h*v)`` by a 3x3 convolution."""

    def __init__(self, grid: tuple[int, int, int], z_maps: int, cond_dim: int) -> None:
        super().__init__()
        self.z_grid = (z_maps, *grid[1:])
        self.conv = WNConv2d(z_maps + cond_dim, grid[0], 3)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if y is not None:
            y = y.expand(*z.shape[:-1], y.shape[-1]).reshape(-1, y.shape[-1])
        maps = _condition_maps(layout.images(z, self.z_grid), y)
        return self.conv(maps).reshape(*z.shape[:-1], -1)


Heads = tuple[nn.Module, nn.Module]


def _flat_heads(spec: NetworkSpec, grid: tuple[int, int, int]) -> Heads:
    """MLP heads of ``hidden`` between the flattened grid and a latent vector, as arch 'conv' has."""
    j, c, h, features = spec.latent_dim, spec.cond_dim, spec.hidden, grid[0] * grid[1] * grid[2]
    encoder = GaussianEncoder(features + c, h, j, spec.activation)
    return encoder, Decoder(j + c, h[::-1], features, spec.activation)


def _grid_heads(spec: NetworkSpec, grid: tuple[int, int, int]) -> Heads:
    """Convolutional heads between the grid and latent_dim / (h v) latent maps on it."""
    cells = grid[1] * grid[2]
    if spec.latent_dim % cells:
        raise VaekitError(
            f"arch {NAME!r} with latent 'grid' puts z on the {grid[1]}x{grid[2]} grid: latent_dim must be "
            f"a multiple of {cells}, got {spec.latent_dim}"
        )
    z_maps = spec.latent_dim // cells
    return GridEncoderHead(grid, z_maps, spec.cond_dim), GridDecoderHead(grid, z_maps, spec.cond_dim)


#: how z sits on the encoder's grid (arch_options 'latent'): heads(spec, grid) -> (encoder, decoder) heads
LATENTS: dict[str, Callable[[NetworkSpec, tuple[int, int, int]], Heads]] = {
    "flat": _flat_heads,
    "grid": _grid_heads,
}


def _count(low: int, limit: str) -> tuple[Callable[[object], bool], str]:
    """A whole number from ``low`` to the maximum ``limits.<limit>``: (the test, what it allows)."""
    high = getattr(limits, limit)
    allowed = lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and low <= v <= high  # noqa: E731
    return allowed, f"a whole number from {low} to {high} (limits.{limit})"


#: arch_options of 'resnet': name -> (is the value allowed, what is allowed)
OPTIONS: dict[str, tuple[Callable[[object], bool], str]] = {
    "width": _count(1, "MAX_WIDTH"),
    "blocks": _count(0, "MAX_LAYERS"),
    "levels": _count(1, "MAX_LEVELS"),
    "latent": (lambda v: isinstance(v, str) and v in LATENTS, f"one of {sorted(LATENTS)}"),
}


def check_options(**options: Any) -> None:
    """VaekitError naming the first of the given 'resnet' arch_options whose value is not allowed."""
    for name, value in options.items():
        allowed, what = OPTIONS[name]
        if not allowed(value):
            raise VaekitError(
                f"arch_options: {name} of arch {NAME!r} must be {what}, got {limits.show(value)}"
            )


def _check_shape(spec: NetworkSpec, levels: int) -> tuple[int, ...]:
    shape = spec.image_shape
    step = 2**levels
    if shape is None or len(shape) != 3 or shape[1] % step or shape[2] % step:
        raise VaekitError(
            f"arch {NAME!r} with levels={levels} halves H and W {levels} times: it needs (C, H, W) images "
            f"with H and W multiples of {step}; got image shape {shape} (use fewer levels, e.g. 2 for 28x28)"
        )
    return shape


@register_architecture(NAME, check=check_options)
def resnet_networks(
    spec: NetworkSpec, width: int = 64, blocks: int = 2, levels: int = 3, latent: str = "flat"
) -> tuple[nn.Module, nn.Module]:
    """Residual encoder and decoder for ``(C, H, W)`` images with H and W multiples of 2^levels.

    Parameters
    ----------
    width : feature maps at every resolution
    blocks : residual blocks after each halving (and before each doubling in the decoder)
    levels : halvings of H and W down to the latent grid (3: 32x32 -> 4x4, 64x64 -> 8x8)
    latent : 'flat' (a vector through MLP heads of ``hidden``) or 'grid' (maps on the grid), :data:`LATENTS`
    """
    shape = _check_shape(spec, levels)
    features = ResNetFeatures(shape, width, blocks, levels, spec.activation)
    to_data = ResNetOutput(shape, spec.params_per_pixel, width, blocks, levels, spec.activation)
    encoder_head, decoder_head = LATENTS[latent](spec, to_data.grid)
    return ConvEncoder(features, encoder_head), ConvDecoder(decoder_head, to_data)
