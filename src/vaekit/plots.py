"""Pictures a user looks at: image grids, reconstructions, the 2-D manifold, interpolations,
latent scatters, training curves and the lower-bound panels of Kingma & Welling's Figure 2."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from vaekit.errors import VaekitError
from vaekit.runs import CURVES, MANIFOLD, RECONSTRUCTIONS, SAMPLES
from vaekit.storage import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vaekit.estimator import VAE, ArrayLike

SCALE = 2  # each pixel drawn as SCALE x SCALE, so 28x28 digits are legible
PAD = 2  # pixels between tiles


def image_grid(images: np.ndarray, image_shape: Sequence[int], ncol: int) -> Image.Image:
    """Tile rows ``(n, C*H*W)`` with values in [0, 1] into one picture, ``ncol`` per row."""
    c, h, w = image_shape
    n = len(images)
    nrow = -(-n // ncol)
    tiles = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0).reshape(n, c, h, w)
    canvas = np.ones((c, nrow * (h + PAD) + PAD, ncol * (w + PAD) + PAD), dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, ncol)
        top, left = PAD + r * (h + PAD), PAD + q * (w + PAD)
        canvas[:, top : top + h, left : left + w] = tile
    pixels = (canvas * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels[0] if c == 1 else pixels[:3].transpose(1, 2, 0))
    return picture.resize((picture.width * SCALE, picture.height * SCALE), Image.Resampling.NEAREST)


def save_png(picture: Image.Image, path: str | Path) -> Path:
    """Save a picture as PNG, atomically (an unwritable path is a one-line VaekitError)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def reconstruction_grid(
    originals: np.ndarray, reconstructions: np.ndarray, image_shape: Sequence[int], ncol: int = 8
) -> Image.Image:
    """Rows of originals, each above the row of their reconstructions."""
    rows = []
    for i in range(0, len(originals), ncol):
        rows += [originals[i : i + ncol], reconstructions[i : i + ncol]]
    return image_grid(np.concatenate(rows), image_shape, ncol)


def manifold_latents(n: int = 20) -> torch.Tensor:
    """An n x n grid of 2-D latents: evenly spaced quantiles through the inverse normal CDF.

    This is the grid of Kingma & Welling's Figure 4: since p(z) is N(0, I), equal
    steps in probability cover the prior evenly. Returns ``(n * n, 2)``; row-major,
    z_2 decreasing down the picture and z_1 increasing across it.
    """
    q = torch.special.ndtri(torch.linspace(0.5 / n, 1 - 0.5 / n, n))
    z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def manifold_picture(vae: VAE, image_shape: Sequence[int], n: int = 20) -> Image.Image:
    """Decoder means over an n x n grid of a 2-D latent space (Kingma & Welling's Figure 4)."""
    if vae.latent_dim != 2:
        raise VaekitError(
            f"the manifold picture needs a 2-D latent space; this model's is {vae.latent_dim}-D"
        )
    return image_grid(vae.inverse_transform(manifold_latents(n)), image_shape, n)


def interpolation(vae: VAE, x_a: np.ndarray, x_b: np.ndarray, steps: int = 10) -> np.ndarray:
    """Decoder means along the straight line between the posterior means of x_a and x_b ``(d,)``.

    Returns ``(steps + 2, d)``: x_a, the decoded points z = (1 - t) mu_a + t mu_b for
    ``steps`` evenly spaced t from 0 to 1, then x_b. The first and last decoded points
    are the reconstructions of x_a and x_b.
    """
    mu = vae.transform(np.stack([x_a, x_b]))  # (2, J)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    decoded = vae.inverse_transform((1 - t) * mu[0] + t * mu[1])  # (steps, d)
    return np.concatenate([x_a[None], decoded, x_b[None]])


def principal_components(z: np.ndarray, n: int = 2) -> np.ndarray:
    """Projections ``(m, n)`` of the rows of z ``(m, J)`` on their first n principal axes (by SVD).

    Each axis's sign is chosen so that its largest loading is positive.
    """
    centred = z - z.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:n]  # (n, J), by decreasing variance
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
    return centred @ axes.T


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def latent_scatter(z: np.ndarray, labels: np.ndarray | None, path: str | Path) -> np.ndarray:
    """Scatter of posterior means z ``(m, J)`` coloured by label; returns the plotted ``(m, 2)``.

    A 2-D latent is drawn as it is; a larger one by its first two principal components.
    """
    if z.shape[1] < 2:
        raise VaekitError(f"a scatter needs at least 2 latent dimensions; this model has {z.shape[1]}")
    coords = z if z.shape[1] == 2 else principal_components(z, 2)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    if labels is None:  # one colour (a colour map with no values to map only draws a warning)
        ax.scatter(coords[:, 0], coords[:, 1], s=4, alpha=0.7)
    else:
        points = ax.scatter(coords[:, 0], coords[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
        fig.colorbar(points, ax=ax, label="label")
    names = ("z_1", "z_2") if z.shape[1] == 2 else ("principal component 1", "principal component 2")
    ax.set_xlabel(f"{names[0]} of E_q[z|x]")
    ax.set_ylabel(f"{names[1]} of E_q[z|x]")
    fig.tight_layout()
    _save_figure(fig, path)
    return coords


def curve_series(history: Sequence[Mapping[str, float]]) -> dict[str, tuple[list[float], list[float]]]:
    """(epochs, ELBO values) per curve, 'train' and (when every row has it) 'test'."""
    epochs = [row["epoch"] for row in history]
    return {
        label: (epochs, [row[key] for row in history])
        for key, label in (("train_elbo", "train"), ("test_elbo", "test"))
        if all(key in row for row in history)
    }


def training_curves(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Train and test ELBO (nats) against epoch, from ``metrics.jsonl`` rows."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, (epochs, values) in curve_series(history).items():
        ax.plot(epochs, values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per example)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, path)


def lower_bound_panels(curves: Mapping[str, Mapping[str, list[float]]], path: str | Path) -> Path:
    """Kingma & Welling's Figure 2: train and test lower bound against training samples evaluated.

    curves : one entry per panel title (e.g. 'N_z = 3'), each with equally long lists
        'samples' (training examples seen), 'train' and 'test' (ELBO, nats per example).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.2), dpi=120, squeeze=False)
    for ax, (title, c) in zip(axes[0], curves.items(), strict=True):
        ax.plot(c["samples"], c["train"], label="AEVB (train)", color="tab:red", marker=".")
        ax.plot(c["samples"], c["test"], label="AEVB (test)", color="tab:red", linestyle="--", marker=".")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("# training samples evaluated")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("lower bound (nats per example)")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    return _save_figure(fig, path)


def sample_grid(
    vae: VAE, n: int, seed: int, label: int | None, conditions: ArrayLike | None = None
) -> Image.Image:
    """n samples as a picture: all of one label, or (conditional, no label) a row per condition.

    conditions : the condition of each row, labels ``(m,)`` or vectors ``(m, c)``; by default
        each class of a model conditioned on labels, while a model conditioned on vectors needs
        them. Used only for a conditional model without ``label``.
    """
    shape = vae.image_shape_ or ()
    if label is not None and vae.n_classes_ is None:
        raise VaekitError("--label needs a run conditioned on class labels (trained with --conditional)")
    if vae.conditional and label is None:
        if conditions is not None:
            rows = np.asarray(conditions)
        elif vae.n_classes_ is not None:
            rows = np.arange(vae.n_classes_)
        else:
            raise VaekitError("this model is conditioned on vectors: pass the condition vectors to draw")
        if rows.ndim not in (1, 2) or len(rows) == 0:
            raise VaekitError(f"conditions: expected labels (m,) or vectors (m, c), got shape {rows.shape}")
        per_row = max(1, n // len(rows))
        y = np.repeat(rows, per_row, axis=0)
        return image_grid(vae.sample(len(y), seed=seed, y=y), shape, per_row)
    return image_grid(vae.sample(n, seed=seed, y=label), shape, min(8, n))


def data_pictures(vae: VAE, x_test: np.ndarray, y_test: Any = None) -> dict[str, Image.Image]:
    """The run's pictures of data, by file name: samples, reconstructions, and the manifold.

    Empty unless the data are images; manifold.png only for a 2-D unconditional model.
    samples.png has a row of 8 samples per class of a model conditioned on labels, or per
    each of the first 8 conditions in ``y_test`` of a model conditioned on vectors;
    reconstructions.png shows the first 32 rows of ``x_test`` ``(n, d)``.
    """
    shape = vae.image_shape_
    if shape is None:
        return {}
    y32 = y_test[:32] if vae.conditional and y_test is not None else None
    vectors = y32[:8] if y32 is not None and vae.n_classes_ is None else None
    pictures = {
        SAMPLES: sample_grid(vae, 8 * (vae.n_classes_ or 8), vae.seed, None, vectors),
        RECONSTRUCTIONS: reconstruction_grid(x_test[:32], vae.reconstruct(x_test[:32], y32), shape),
    }
    if vae.latent_dim == 2 and not vae.conditional:
        pictures[MANIFOLD] = manifold_picture(vae, shape)
    return pictures


def write_pictures(vae: VAE, run: Path, x_test: np.ndarray, y_test: Any = None) -> list[Path]:
    """The :func:`data_pictures` (images only) and curves.png (every run), written into the run folder."""
    written = [save_png(picture, run / name) for name, picture in data_pictures(vae, x_test, y_test).items()]
    if vae.history_:
        written.append(training_curves(vae.history_, run / CURVES))
    return written
