"""The largest sizes vaekit accepts, and the checks that hold inputs to them before anything is allocated.

Every maximum is spelled here once, with why it is that number. A file, flag or argument
beyond one is refused with a one-line :class:`~vaekit.errors.VaekitError` (``WHERE: problem``)
before its memory is asked for, so that a hostile or mistaken input fails at once instead of
exhausting the machine: a data file's header is read before its data, an image's size before
its pixels, a model's parameters are counted before they are allocated.
"""

from __future__ import annotations

import contextvars
import numbers
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from vaekit.errors import VaekitError

#: numbers in one data set, held in memory as float32 rows: 4 GiB. MNIST has 55 million (1/20 of it).
MAX_VALUES = 2**30
#: bytes the arrays of one data file may take as stored: the 4 GiB of their float32 rows, so that a
#: float64 file (or a small .npz inflating to gigabytes) is held to what vaekit would keep of it
MAX_DATA_BYTES = 4 * MAX_VALUES
#: bytes of one uint8 data file read from disk (or image-folder cache), read a minibatch at a time
#: (:mod:`vaekit.byterows`), so not held to MAX_DATA_BYTES: 1 TiB, 80 times ImageNet's 1.28 million
#: training images at 64x64x3
MAX_MAPPED_BYTES = 2**40
#: pixels of one image file: 8192x8192, more than a 48-megapixel photo (8064x6048); decoded as
#: RGBA it is 256 MiB. Below Pillow's own warning (89 million), so Pillow never prints one.
MAX_IMAGE_PIXELS = 2**26
#: units in one layer (a hidden width or the latent size J): 65536, some 30 times the widest
#: layers of published VAEs (Kingma & Welling 2014 used 500; Burda et al. 2015 up to 200)
MAX_WIDTH = 2**16
#: hidden layers of the encoder (mirrored in the decoder): far deeper than an MLP VAE is trained,
#: and few enough that building the module takes milliseconds
MAX_LAYERS = 256
#: weights of one model: 1 GiB as float32, 4 GiB with their gradients and Adam's two moments
MAX_PARAMETERS = 2**28
#: mixture components K per pixel of the discretized logistic mixture: 25 times PixelCNN++'s 10
#: (Salimans et al. 2017); at C = 3 the decoder then gives 2560 numbers a pixel
MAX_COMPONENTS = 256
#: halvings of an image side by arch 'resnet' (its levels): 2^13 = 8192, the side of the largest
#: image vaekit reads (MAX_IMAGE_PIXELS = 8192^2)
MAX_LEVELS = 13
#: samples L of z per data point: 5 times the most the papers train with (k = 50, Burda et al.
#: 2015); an evaluation pass holds (L, 1000, d) floats, 0.8 GB for MNIST at L = 256
MAX_SAMPLES = 256
#: draws of z per optimiser step, L x M (samples x batch size): the decoded (L, M, d) floats are
#: 0.4 GB for MNIST; room for full-batch training on 131072 rows or L = 50 with M = 2621
MAX_DRAWS_PER_STEP = 2**17
#: bytes of a JSON file vaekit reads (config.json, metrics.jsonl, eval.json): config.json is a few
#: kB, metrics.jsonl some 300 bytes an epoch, so 64 MiB is over 200,000 epochs
MAX_JSON_BYTES = 2**26
#: bytes of a safetensors file: a checkpoint's weights, Adam's two moments and the best epoch's
#: weights (4 float32 a parameter), its epoch's permutation (one int64 a training row) and 64 MiB
#: of metadata (the history)
MAX_TENSOR_FILE_BYTES = 4 * 4 * MAX_PARAMETERS + 8 * MAX_VALUES + 2**26
#: bytes of an uncompressed IDX file: the largest vaekit reads (60,000 training images of 28x28
#: and a 16-byte header, MNIST and Fashion-MNIST); a longer one fails its checksum anyway
MAX_IDX_BYTES = 60_000 * 28 * 28 + 16
#: an integer argument or config value beyond int64 is refused before it is converted or printed
#: (a 4000-digit number in config.json would overflow float() and fill the error line)
MAX_INTEGER = 2**63 - 1

#: the integer fields of the configs that size memory, and their maxima (each also at least 1)
SIZES = {
    "latent_dim": "MAX_WIDTH",
    "hidden": "MAX_WIDTH",
    "upper_latents": "MAX_WIDTH",
    "upper_hidden": "MAX_WIDTH",
    "samples": "MAX_SAMPLES",
}


def _integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def show(value: object) -> str:
    """``value!r``, or its size for an integer too long to print in one line."""
    if _integer(value) and abs(int(value)) > MAX_INTEGER:  # type: ignore[call-overload]
        return f"an integer of {int(value).bit_length()} bits"  # type: ignore[call-overload]
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def check_config(cfg: Any) -> None:
    """Refuse sizes beyond their maximum and integers beyond int64 in a config dataclass.

    Runs first in ``__post_init__``, so that the other checks never convert or print such a
    number; values of the wrong type are left to them.
    """
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        items = value if isinstance(value, tuple) else (value,)
        if f.name in ("hidden", "upper_latents", "upper_hidden") and len(items) > MAX_LAYERS:
            raise VaekitError(
                f"{f.name} must have at most {MAX_LAYERS} layers (limits.MAX_LAYERS), got {len(items)}"
            )
        for item in items:
            if _integer(item) and abs(int(item)) > MAX_INTEGER:
                raise VaekitError(f"{f.name} must be within int64 (below 2**63 in size), got {show(item)}")
            maximum = globals()[SIZES[f.name]] if f.name in SIZES else None
            if maximum is not None and _integer(item) and item > maximum:
                raise VaekitError(
                    f"{f.name} must be at most {maximum} (limits.{SIZES[f.name]}), got {show(item)}"
                )
    samples, batch = getattr(cfg, "samples", 1), getattr(cfg, "batch_size", 1)
    if (
        _integer(samples)
        and _integer(batch)
        and samples > 0
        and batch > 0
        and samples * batch > MAX_DRAWS_PER_STEP
    ):
        raise VaekitError(
            f"samples x batch_size must be at most {MAX_DRAWS_PER_STEP} draws of z per step "
            f"(limits.MAX_DRAWS_PER_STEP), got {cfg.samples} x {cfg.batch_size}"
        )


_COUNTING = contextvars.ContextVar("_COUNTING", default=False)


def check_network(build: Callable[..., torch.nn.Module], *args: Any) -> None:
    """Refuse a network of more than :data:`MAX_PARAMETERS` weights before any is allocated.

    ``build(*args)`` is the network's constructor; it is run once on PyTorch's meta device,
    which records shapes and allocates nothing, so the count is exact for any architecture.
    Called at the top of that constructor (the meta-device build skips the check).
    """
    if _COUNTING.get():
        return
    for arg in args:  # data width, condition width, image shape: no row holds more than a data set
        for size in arg if isinstance(arg, tuple | list) else (arg,):
            if _integer(size) and not 0 <= size <= MAX_VALUES:
                raise VaekitError(
                    f"a network needs sizes from 0 to {MAX_VALUES:,} (limits.MAX_VALUES), got {show(size)}"
                )
    token = _COUNTING.set(True)
    try:
        with torch.device("meta"):
            network = build(*args)
    finally:
        _COUNTING.reset(token)
    count = sum(p.numel() for p in network.parameters())
    if count > MAX_PARAMETERS:
        raise VaekitError(
            f"the model would have {count:,} parameters ({16 * count / 2**30:,.0f} GiB to train with Adam); "
            f"vaekit builds at most {MAX_PARAMETERS:,} (limits.MAX_PARAMETERS): use smaller layers "
            "or fewer data dimensions"
        )


def check_data(where: str | Path, count: int, nbytes: int, what: str = "holds") -> None:
    """Refuse data of more than :data:`MAX_VALUES` numbers or :data:`MAX_DATA_BYTES` bytes as stored.

    count : numbers the data would hold; nbytes : bytes they take as stored (or as parsed)
    """
    if count > MAX_VALUES or nbytes > MAX_DATA_BYTES:
        raise VaekitError(
            f"{where}: {what} {count:,} values ({nbytes:,} bytes); vaekit holds data in memory "
            f"and reads at most {MAX_VALUES:,} values and {MAX_DATA_BYTES:,} bytes "
            "(limits.MAX_VALUES, MAX_DATA_BYTES)"
        )


def check_mapped(where: str | Path, nbytes: int) -> None:
    """Refuse a memory-mapped data file of more than :data:`MAX_MAPPED_BYTES` bytes."""
    if nbytes > MAX_MAPPED_BYTES:
        raise VaekitError(
            f"{where}: holds {nbytes:,} bytes of data; vaekit maps at most {MAX_MAPPED_BYTES:,} "
            "(limits.MAX_MAPPED_BYTES)"
        )


def check_image(where: str | Path, height: int, width: int) -> None:
    """Refuse an image of more than :data:`MAX_IMAGE_PIXELS` pixels, from its header, before decoding."""
    if height * width > MAX_IMAGE_PIXELS:
        raise VaekitError(image_too_large(where, f"{height}x{width} pixels (HxW)"))


def check_samples(n: int, n_features: int) -> None:
    """Refuse ``vaekit sample -n`` beyond one picture of :data:`MAX_IMAGE_PIXELS` pixels (n samples of
    n_features pixels each), before any is drawn."""
    if n * n_features > MAX_IMAGE_PIXELS:
        raise VaekitError(
            f"-n {n}: {n:,} samples of {n_features} pixels are over vaekit's limit of "
            f"{MAX_IMAGE_PIXELS:,} pixels in one picture (limits.MAX_IMAGE_PIXELS); "
            f"draw at most {MAX_IMAGE_PIXELS // n_features:,}"
        )


def image_too_large(where: str | Path, size: str) -> str:
    """The message for an image over :data:`MAX_IMAGE_PIXELS` pixels; ``size`` says how large it is."""
    return (
        f"{where}: image of {size} is over vaekit's limit of {MAX_IMAGE_PIXELS:,} pixels "
        "(limits.MAX_IMAGE_PIXELS); scale it down first"
    )
