"""torch.nn building blocks: the Gaussian encoder q(z|x), the decoder of p(x|z), and the VAE module.

Shapes: ``d`` data dimensions (flattened), ``J`` latent dimensions, ``c``
condition dimensions (0 for an unconditional model), ``L`` samples of z.

Encoder/decoder pairs come from the :data:`ARCHITECTURES` registry ('mlp', 'conv'): a builder
takes a :class:`NetworkSpec` (and the architecture's keyword options, ``arch_options`` in the
config) and returns ``(encoder, decoder)``:

- encoder: ``forward(x (n, d), y (n, c) or None) -> (mu, logvar)``, each ``(n, J)``;
- decoder: ``forward(z (..., n, J), y (n, c) or None) -> params (..., n, spec.out_dim)``, the
  likelihood's parameters, parameter-major: for images of (C, H, W), ``k = params_per_pixel`` maps
  of H x W (k = the likelihood's params_per_dim times C when it takes numbers per dimension); for
  other data, k numbers for each of the d dimensions (all first parameters, then the second...).

A user adds one with :func:`register_architecture`; the model's config records its name and options,
so :meth:`vaekit.VAE.load` rebuilds it once the registering module is imported.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vaekit import layout, limits, scaling
from vaekit.errors import VaekitError
from vaekit.likelihoods import Likelihood, make_likelihood
from vaekit.objectives import gaussian_kl

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

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


@dataclass(frozen=True)
class NetworkSpec:
    """What an architecture builder is given: the sizes of the data, the latent and the condition."""

    data_dim: int  # d, flattened data dimensions
    latent_dim: int  # J
    cond_dim: int  # c, 0 for an unconditional model
    params_per_pixel: int  # k, decoder outputs per pixel of C channels (per dimension for other data)
    hidden: tuple[int, ...]  # hidden widths of the encoder (the decoder mirrors them)
    activation: str  # a key of ACTIVATIONS
    image_shape: tuple[int, ...] | None  # (C, H, W) of image rows, None for other data

    @property
    def out_dim(self) -> int:
        """Decoder outputs per example: k for each of the d / C pixels (C = 1 for other data)."""
        channels = self.image_shape[0] if self.image_shape else 1
        return self.params_per_pixel * (self.data_dim // channels)


Builder = Callable[..., tuple[nn.Module, nn.Module]]
#: encoder/decoder architectures by name (``ModelConfig.arch``): builder(spec, **arch_options)
ARCHITECTURES: dict[str, Builder] = {}
#: checks of the options of the architectures that have one: check(**arch_options) raises VaekitError
OPTION_CHECKS: dict[str, Callable[..., None]] = {}


def register_architecture(
    name: str, check: Callable[..., None] | None = None
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(spec: NetworkSpec, **options) -> (encoder, decoder)`` as ``name``;
    ``check(**options)``, if given, refuses bad option values (with a VaekitError) before any build.

    >>> @register_architecture("wide")
    ... def wide(spec, width=1024):
    ...     c, j = spec.cond_dim, spec.latent_dim
    ...     encoder = GaussianEncoder(spec.data_dim + c, (width,), j, spec.activation)
    ...     return encoder, Decoder(j + c, (width,), spec.out_dim, spec.activation)
    """

    def register(builder: Builder) -> Builder:
        ARCHITECTURES[name] = builder
        if check is not None:
            OPTION_CHECKS[name] = check
        return builder

    return register


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag exp(logvar(x))): an MLP trunk with separate linear heads.

    forward(x ``(n, in_dim)``, y ``(n, c)`` or None): the condition joins the input.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], latent_dim: int, activation: str) -> None:
        super().__init__()
        self.trunk = mlp([in_dim, *hidden], activation)
        width = hidden[-1] if hidden else in_dim
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x ``(n, in_dim - c)``, y ``(n, c)`` -> mu, logvar, each ``(n, J)``."""
        h = self.trunk(_with_condition(x, y))
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)


class Decoder(nn.Module):
    """z ``(..., n, J)``, y ``(n, c)`` -> likelihood parameters ``(..., n, out_dim)`` (e.g. Bernoulli
    logits); in_dim = J + c."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, activation: str) -> None:
        super().__init__()
        self.trunk = mlp([in_dim, *hidden], activation)
        self.out = nn.Linear(hidden[-1] if hidden else in_dim, out_dim)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.out(self.trunk(_with_condition(z, y)))


@register_architecture("mlp")
def mlp_networks(spec: NetworkSpec) -> tuple[nn.Module, nn.Module]:
    """Fully connected encoder and mirrored decoder (the paper's MLPs, appendix C)."""
    j, c, h = spec.latent_dim, spec.cond_dim, spec.hidden
    encoder = GaussianEncoder(spec.data_dim + c, h, j, spec.activation)
    return encoder, Decoder(j + c, h[::-1], spec.out_dim, spec.activation)


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
        return self.net(layout.images(x, self.image_shape)).flatten(1)


class ConvOutput(nn.Module):
    """Features ``(..., n, 64 * H/4 * W/4)`` -> likelihood parameters ``(..., n, k * H*W)``.

    Two 4x4 stride-2 transposed convolutions; the k = params_per_pixel output channels are
    parameter-major, so the flattened row is [first parameter of every pixel, second ...] as
    likelihoods expect.
    """

    def __init__(self, image_shape: Sequence[int], params_per_pixel: int, activation: str) -> None:
        super().__init__()
        _, h, w = image_shape
        c1, c2 = CONV_CHANNELS
        act = ACTIVATIONS[activation]
        self.grid = (c2, h // 4, w // 4)
        self.in_dim = c2 * (h // 4) * (w // 4)
        self.widest = c1 * (h // 2) * (w // 2)  # the first transposed convolution's output
        self.net = nn.Sequential(
            act(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(c1, params_per_pixel, 4, stride=2, padding=1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(layout.images(h, self.grid)).reshape(*h.shape[:-1], -1)


class ConvEncoder(nn.Module):
    """Convolutional features, then the condition, then a Gaussian MLP head."""

    def __init__(self, features: ConvFeatures, head: GaussianEncoder) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.head(self.features(x), y)


class ConvDecoder(nn.Module):
    """An MLP from (z, y) to feature maps, then transposed convolutions to the likelihood's parameters."""

    def __init__(self, head: Decoder, to_data: ConvOutput) -> None:
        super().__init__()
        self.head, self.to_data = head, to_data
        self.floats_per_sample = to_data.widest

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.to_data(self.head(z, y))


@register_architecture("conv")
def conv_networks(spec: NetworkSpec) -> tuple[nn.Module, nn.Module]:
    """Two 4x4 stride-2 convolutions (mirrored by transposed ones) around the MLPs of ``hidden``,
    for ``(C, H, W)`` images with H and W divisible by 4; the condition joins after the convolutions."""
    _check_conv_shape(spec.image_shape, spec.data_dim)
    shape = spec.image_shape
    assert shape is not None
    features = ConvFeatures(shape, spec.activation)
    to_data = ConvOutput(shape, spec.params_per_pixel, spec.activation)
    j, c, h = spec.latent_dim, spec.cond_dim, spec.hidden
    encoder = ConvEncoder(features, GaussianEncoder(features.out_dim + c, h, j, spec.activation))
    return encoder, ConvDecoder(Decoder(j + c, h[::-1], to_data.in_dim, spec.activation), to_data)


class VAEModule(nn.Module):
    """The AEVB model: encoder q(z|x), prior N(0, I), decoder p(x|z), optionally conditioned on y.

    Parameters
    ----------
    data_dim : d, the number of (flattened) data dimensions
    config : the model configuration (latent size, hidden widths, activation, likelihood, architecture)
    cond_dim : c, the size of the condition vector y (0: unconditional)
    image_shape : (C, H, W) of the rows, needed by image architectures such as 'conv'
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
        #: N(0, 1) draws per sample of the latents (more with layers above z)
        self.noise_dim = config.latent_dim
        channels = image_shape[0] if image_shape is not None else 1
        self.likelihood: Likelihood = make_likelihood(config.likelihood, config.likelihood_options, channels)
        #: per-column standardization of x (its mean and scale are buffers), or None (:mod:`vaekit.scaling`)
        standardize = scaling.applies(config, images=image_shape is not None)
        self.scaler = scaling.Standardizer(data_dim) if standardize else None
        if self.scaler is not None:  # the likelihood then scores (and decodes to) x in its own units
            self.likelihood = scaling.Standardized(self.likelihood, self.scaler)
        spec = NetworkSpec(
            data_dim,
            config.latent_dim,
            cond_dim,
            self.likelihood.params_per_pixel,
            tuple(config.hidden),
            config.activation,
            tuple(image_shape) if image_shape is not None else None,
        )
        self.encoder, self.decoder = build_networks(config.arch, spec, config.arch_options)
        #: floats the decoder's widest layer holds per sample of z; evaluation sizes its passes by it
        self.decode_floats = max(
            [*config.hidden, spec.out_dim, getattr(self.decoder, "floats_per_sample", 0)]
        )

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x ``(n, d)``, y ``(n, c)`` -> mu, logvar of q(z|x, y), each ``(n, J)``."""
        return self.encoder(self.scaler(x) if self.scaler is not None else x, y)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z ``(..., n, J)``, y ``(n, c)`` -> likelihood parameters ``(..., n, spec.out_dim)``."""
        return self.decoder(z, y)

    def sample_latent(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws z ~ p(z) = N(0, I) ``(n, J)``, on the generator's device."""
        return torch.randn(n, self.latent_dim, generator=generator, device=generator.device)

    def layer_usage(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None = None
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per stochastic layer (here one): E_q[z|x] ``(n, J)``, the KL per unit ``(n, J)`` (closed
        form, Kingma & Welling 2014, App. B) and the KL ``(n,)``."""
        mu, logvar = self.encode(x, y)  # (n, J) each
        kl = gaussian_kl(mu, logvar)
        return [(mu, kl, kl.sum(-1))]


def build_networks(
    name: str, spec: NetworkSpec, options: Mapping[str, Any] | None
) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) of the registered architecture ``name`` with its keyword ``options``."""
    check_architecture(name, options)
    return ARCHITECTURES[name](spec, **dict(options or {}))


def check_architecture(name: str, options: Mapping[str, Any] | None) -> None:
    """VaekitError unless ``name`` is registered, its builder takes the keyword ``options`` and their
    values pass its check (:data:`OPTION_CHECKS`)."""
    if name not in ARCHITECTURES:
        raise VaekitError(
            f"architecture {name!r} is not registered (registered: {sorted(ARCHITECTURES)}); import the "
            "module that registers it with vaekit.register_architecture first"
        )
    try:
        inspect.signature(ARCHITECTURES[name]).bind(None, **dict(options or {}))
    except TypeError as e:
        raise VaekitError(f"arch_options {dict(options or {})} do not fit architecture {name!r} ({e})") from e
    if name in OPTION_CHECKS:
        OPTION_CHECKS[name](**dict(options or {}))


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


# the architectures defined in modules of their own register themselves here, with the registry
from vaekit import resnet  # noqa: E402, F401  ('resnet')
