"""Pictures a user looks at: image grids, reconstructions, the 2-D manifold, training curves."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaekit.storage import atomic_write

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


def training_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Train and test ELBO (nats) against epoch, from ``metrics.jsonl`` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_elbo", "train"), ("test_elbo", "test")):
        if all(key in row for row in history):
            ax.plot(epochs, [row[key] for row in history], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per example)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)
