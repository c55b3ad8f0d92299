"""A trained VAE's encoder and decoder as standalone files (ONNX or TorchScript) that run without vaekit.

The encoder maps data rows to q(z|x) = N(mu, diag exp(logvar)) (Kingma & Welling 2014, sec. 3):

    x ``(n, d)`` [, y ``(n, c)``] -> mu ``(n, J)``, logvar ``(n, J)``

The decoder maps latents to the likelihood's mean in data space, E[x | z] (probabilities
for Bernoulli pixels, not logits), as :meth:`VAE.inverse_transform` returns it:

    z ``(n, J)`` [, y ``(n, c)``] -> x_mean ``(n, d)``

``y`` is the condition of a conditional model. The batch size ``n`` is free in both files.
:data:`SIGNATURE` is a JSON file beside them saying what each input and output holds.

Formats (:data:`FORMATS`): ``onnx`` (needs the extra ``vaekit[onnx]``: onnx and onnxscript
for torch's ``torch.export``-based exporter, onnxruntime to run the files) and
``torchscript`` (``torch.jit.load`` in any process with torch, no vaekit needed).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vaekit import __version__, storage
from vaekit.errors import VaekitError
from vaekit.networks import VAEModule

if TYPE_CHECKING:
    from vaekit.estimator import VAE

#: the two exported networks, by file stem
ENCODER, DECODER = "encoder", "decoder"
#: the JSON beside them: shapes, names and meaning of every input and output
SIGNATURE = "signature.json"
#: input and output names of the exported graphs (TorchScript: the forward arguments' names)
X, Y, Z, MU, LOGVAR, X_MEAN = "x", "y", "z", "mu", "logvar", "x_mean"
BATCH = "n"  # the name of the free batch axis
EXAMPLE_BATCH = 3  # rows of the example inputs the exporters trace (2+: torch.export specialises 0 and 1)


class Encoder(nn.Module):
    """q(z|x, y): rows x ``(n, d)`` (and conditions y ``(n, c)``) -> mu, logvar, each ``(n, J)``."""

    def __init__(self, module: VAEModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.module.encode(x, y)


class MeanDecoder(nn.Module):
    """E[x | z, y]: latents z ``(n, J)`` (and conditions y ``(n, c)``) -> data-space means ``(n, d)``."""

    def __init__(self, module: VAEModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.module.likelihood.mean(self.module.decode(z, y))


def _import(name: str, extra: str, what: str) -> Any:
    """Import an optional dependency, or a one-line VaekitError naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise VaekitError(f"{name}: not installed; {what} needs it: pip install 'vaekit[{extra}]'") from e


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence warnings, and the named logger below errors, for the duration."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _onnx_bytes(
    net: nn.Module, args: tuple[Tensor, ...], inputs: Sequence[str], outputs: Sequence[str]
) -> bytes:
    """The ONNX model of ``net`` called on ``args``, every input's axis 0 free (named :data:`BATCH`).

    torch's ``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9; the
    TorchScript-based one warns that it will be removed) needs onnx and onnxscript.
    """
    for name in ("onnx", "onnxscript"):
        _import(name, "onnx", "ONNX export")
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise VaekitError(
            f"torch {torch.__version__}: its torch.onnx.export has no dynamo=True exporter; "
            "ONNX export needs a newer torch"
        )
    batch = torch.export.Dim(BATCH)
    with _quiet("torch.onnx"):  # it logs each torchvision op it cannot find, and notes on its internals
        program = torch.onnx.export(
            net,
            args,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_shapes=tuple({0: batch} for _ in args),
            dynamo=True,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def _torchscript_bytes(
    net: nn.Module, args: tuple[Tensor, ...], inputs: Sequence[str], outputs: Sequence[str]
) -> bytes:
    """``net`` traced to TorchScript on ``args`` and saved as ``torch.jit.save`` writes it.

    The trace records the batch size as a tensor size, so any n works; names are the
    forward arguments' (inputs) and the positions in the returned tuple (outputs).
    """
    buffer = io.BytesIO()
    with _quiet("torch.jit"):  # torch 2.13 marks torch.jit deprecated; the format is what is asked for
        torch.jit.save(torch.jit.trace(net, args), buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Format:
    """An export format: its file suffix, its writer, and how the files are run."""

    suffix: str
    #: (network, example inputs, input names, output names) -> the file's bytes
    write: Callable[[nn.Module, tuple[Tensor, ...], Sequence[str], Sequence[str]], bytes]
    runs_with: str


FORMATS: dict[str, Format] = {
    "onnx": Format(".onnx", _onnx_bytes, "onnxruntime.InferenceSession(path).run(None, {name: array})"),
    "torchscript": Format(".pt", _torchscript_bytes, "torch.jit.load(path)(*inputs), in input order"),
}


def _tensor(name: str, width: int, meaning: str) -> dict[str, Any]:
    return {"name": name, "shape": [BATCH, width], "dtype": "float32", "meaning": meaning}


def _condition(vae: VAE) -> dict[str, Any] | None:
    """What the condition input y of a conditional model holds (None for an unconditional one)."""
    c = vae.module_.cond_dim
    if not c:
        return None
    if vae.n_classes_ is None:
        meaning = f"the condition vector of each row, as the model was trained with ({c} numbers)"
        return {**_tensor(Y, c, meaning), "encoding": "vectors"}
    meaning = (
        f"the class label k in 0..{c - 1} of each row, one-hot encoded: 1.0 in column k, 0.0 in the others"
    )
    return {**_tensor(Y, c, meaning), "encoding": "one-hot", "n_classes": c}


def signature(vae: VAE, fmt: str) -> dict[str, Any]:
    """The contents of :data:`SIGNATURE`: file, inputs and outputs of the encoder and the decoder."""
    module, suffix = vae.module_, FORMATS[fmt].suffix
    d, j = module.data_dim, module.latent_dim
    layout = "images flattened in (C, H, W) order, " if vae.image_shape_ else ""
    x = _tensor(X, d, f"data rows as VAE.transform reads them: {layout}8-bit values divided by 255")
    cond = _condition(vae)
    extra, q = ([cond], "q(z|x, y)") if cond else ([], "q(z|x)")
    return {
        "vaekit_version": __version__,
        "format": fmt,
        "runs_with": FORMATS[fmt].runs_with,
        "likelihood": vae.likelihood,
        "image_shape": list(vae.image_shape_) if vae.image_shape_ else None,
        ENCODER: {
            "file": ENCODER + suffix,
            "inputs": [x, *extra],
            "outputs": [
                _tensor(MU, j, f"mean of the Gaussian posterior {q}"),
                _tensor(LOGVAR, j, f"log-variance of {q}, per latent dimension"),
            ],
        },
        DECODER: {
            "file": DECODER + suffix,
            "inputs": [_tensor(Z, j, "latents; the prior p(z) is N(0, I)"), *extra],
            "outputs": [
                _tensor(X_MEAN, d, f"E[x|z], the {vae.likelihood} likelihood's mean in data space"),
            ],
        },
    }


def example_inputs(vae: VAE, n: int = EXAMPLE_BATCH) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Seeded inputs ``(x[, y])`` of the encoder and ``(z[, y])`` of the decoder, n rows each, on the CPU."""
    module = vae.module_
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, module.data_dim, generator=gen)
    z = torch.randn(n, module.latent_dim, generator=gen)
    if not module.cond_dim:
        return (x,), (z,)
    if vae.n_classes_ is None:
        y = torch.randn(n, module.cond_dim, generator=gen)
    else:
        y = nn.functional.one_hot(torch.arange(n) % module.cond_dim, module.cond_dim).float()
    return (x, y), (z, y)


def export(vae: VAE, folder: str | Path, fmt: str = "onnx") -> list[Path]:
    """Write the encoder, the decoder and :data:`SIGNATURE` of a fitted VAE into folder.

    fmt : one of :data:`FORMATS` ('onnx', 'torchscript')

    Returns the paths written. Files are written atomically; existing ones are replaced.
    """
    if fmt not in FORMATS:
        raise VaekitError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
    if not hasattr(vae, "module_"):
        raise VaekitError("this VAE is not fitted yet; call fit() or VAE.load() first")
    folder = Path(folder)
    storage.make_folder(folder, "export folder")
    # a float32 CPU copy in eval mode: the trainer's (flat, maybe GPU) parameters stay untouched
    module = copy.deepcopy(vae.module_).float().cpu().eval()
    spec = signature(vae, fmt)
    x_args, z_args = example_inputs(vae)
    written = []
    for name, net, args in ((ENCODER, Encoder(module), x_args), (DECODER, MeanDecoder(module), z_args)):
        names = spec[name]
        data = FORMATS[fmt].write(
            net, args, [t["name"] for t in names["inputs"]], [t["name"] for t in names["outputs"]]
        )
        storage.atomic_write(folder / names["file"], data)
        written.append(folder / names["file"])
    storage.write_json(folder / SIGNATURE, spec)
    return [*written, folder / SIGNATURE]
