"""Pictures a user looks at: image grids, reconstructions, the 2-D manifold, interpolations,
latent scatters, training curves and the lower-bound panels of Kingma & Welling's Figure 2."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from vaekit.errors import VaekitError
from vaekit.runs import CURVES, MANIFOLD, RECONSTRUCTIONS, SAMPLES
from vaekit.storage import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vaekit.estimator import VAE, ArrayLike

SCALE = 2  # each pixel drawn as SCALE x SCALE, so 28x28 digits are legible
PAD = 2  # pixels between tiles
TITLE_BAND = 22  # pixels above an image grid for its title (:func:`titled`)
FONT_SIZE = 12  # of titles and row labels on image grids


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
    """Save a picture as PNG, atomically (an unwritable path is a one-line VaekitError).

    A picture made by :func:`titled` keeps its title as the PNG's standard ``Title`` text.
    """
    buffer = io.BytesIO()
    text = PngImagePlugin.PngInfo()
    if isinstance(picture.info.get("Title"), str):
        text.add_text("Title", picture.info["Title"])
    picture.save(buffer, format="PNG", pnginfo=text)
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


#: row labels of :func:`reconstruction_grid`'s pictures, top row of each pair first
RECONSTRUCTION_ROWS = ("data", "reconstruction")


def label_margin(row_labels: Sequence[str]) -> int:
    """Width in pixels of the left margin that :func:`titled` gives ``row_labels`` (0 without labels)."""
    font = ImageFont.load_default(size=FONT_SIZE)
    return max((int(font.getlength(label)) + 2 * PAD * SCALE for label in row_labels), default=0)


def titled(
    picture: Image.Image, title: str, row_labels: Sequence[str] = (), tile_height: int = 0
) -> Image.Image:
    """The picture under a band of ``TITLE_BAND`` pixels holding ``title``, with ``row_labels`` in a
    left margin beside its rows of tiles (cycled; ``tile_height`` is the tile's height in data
    pixels, needed with labels). The picture itself sits unchanged at (margin, TITLE_BAND); the
    title is also kept as ``info['Title']`` (:func:`save_png` writes it into the PNG).
    """
    font = ImageFont.load_default(size=FONT_SIZE)
    margin = label_margin(row_labels)
    width = max(margin + picture.width, int(font.getlength(title)) + 4 * PAD * SCALE)
    canvas = Image.new(picture.mode, (width, TITLE_BAND + picture.height), "white")
    canvas.paste(picture, (margin, TITLE_BAND))
    draw = ImageDraw.Draw(canvas)
    ink = 0 if picture.mode == "L" else (0, 0, 0)
    draw.text((2 * PAD * SCALE, TITLE_BAND // 2), title, fill=ink, font=font, anchor="lm")
    if row_labels:
        row = (tile_height + PAD) * SCALE  # one row of tiles, with its padding
        for i in range((picture.height - PAD * SCALE) // row):
            middle = TITLE_BAND + PAD * SCALE + i * row + tile_height * SCALE // 2
            draw.text(
                (PAD * SCALE, middle), row_labels[i % len(row_labels)], fill=ink, font=font, anchor="lm"
            )
    canvas.info["Title"] = title
    return canvas


def run_title(vae: VAE, what: str = "") -> str:
    """``what`` (e.g. 'samples') and the run: its data, model and epochs trained.

    E.g. 'samples: mnist, 784-400-20 MLP VAE, bernoulli (grey levels), 10 epochs'.
    """
    data = (vae.source_ or {}).get("data")
    name = Path(data).name if isinstance(data, str) else "data"
    if vae.arch == "mlp":
        model = "-".join(map(str, (vae.n_features_in_, *vae.hidden, vae.latent_dim))) + " MLP"
    else:
        model = f"{vae.arch}, {vae.latent_dim}-D latent,"
    model = ("conditional " if vae.conditional else "") + model
    targets = " (grey levels)" if vae.likelihood == "bernoulli" and vae.binarize == "none" else ""
    epochs = len(vae.history_) or vae.epochs
    run = f"{name}, {model} VAE, {vae.likelihood}{targets}, {epochs} epoch{'s' if epochs != 1 else ''}"
    return f"{what}: {run}" if what else run


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
    """``fig`` as a PNG whose standard ``Title`` text is the figure's title (as :func:`titled` keeps it)."""
    buffer = io.BytesIO()
    title = fig.get_suptitle() or (fig.axes[0].get_title() if fig.axes else "")
    fig.savefig(buffer, format="png", metadata={"Title": title})
    _pyplot().close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def latent_scatter(
    z: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path,
    title: str | None = None,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Scatter of posterior means z ``(m, J)`` coloured by label; returns the plotted ``(m, 2)``.

    A 2-D latent is drawn as it is; a larger one by its first two principal components. The
    legend has one entry per class: its name (``names[label]``, e.g. an image folder's
    sub-folder) or its number.
    title : names the run (:func:`run_title`)
    """
    if z.shape[1] < 2:
        raise VaekitError(f"a scatter needs at least 2 latent dimensions; this model has {z.shape[1]}")
    coords = z if z.shape[1] == 2 else principal_components(z, 2)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    if labels is None:  # one colour (a colour map with no values to map only draws a warning)
        ax.scatter(coords[:, 0], coords[:, 1], s=4, alpha=0.7)
    else:
        colours = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for k in np.unique(labels):
            name = names[k] if names is not None and 0 <= k < len(names) else str(k)
            rows = labels == k
            ax.scatter(coords[rows, 0], coords[rows, 1], s=4, alpha=0.7, color=colours(k % 20), label=name)
        ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
    names = ("z_1", "z_2") if z.shape[1] == 2 else ("principal component 1", "principal component 2")
    ax.set_xlabel(f"{names[0]} of E_q[z|x]")
    ax.set_ylabel(f"{names[1]} of E_q[z|x]")
    ax.set_title(title or "posterior means of the test data", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)
    return coords


#: the terms of a run's metrics that :func:`training_curves` draws, one panel each: key suffix, axis label
CURVE_TERMS = (
    ("elbo", "ELBO"),
    ("recon", "reconstruction term E_q[log p(x|z)]"),
    ("kl", "KL(q(z|x) || p(z))"),
)
#: how the train and test curves are told apart in every figure: (label, line style, marker)
SPLIT_STYLES = (("train", "-", "o"), ("val", ":", "^"), ("test", "--", "s"))


def curve_series(
    history: Sequence[Mapping[str, float]], term: str = "elbo"
) -> dict[str, tuple[list[float], list[float]]]:
    """(epochs, values) of one term of :data:`CURVE_TERMS` per curve, 'train', 'val' (a validation
    split) and 'test' (each when every row has it)."""
    epochs = [row["epoch"] for row in history]
    return {
        split: (epochs, [row[f"{split}_{term}"] for row in history])
        for split, _, _ in SPLIT_STYLES
        if all(f"{split}_{term}" in row for row in history)
    }


def curves_figure(history: Sequence[Mapping[str, float]], title: str | None = None) -> Figure:
    """The ELBO, reconstruction term and KL (nats per example) against epoch, a panel each, from
    a run's metric rows; a term no row has gets no panel. Epoch ticks are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    terms = [(key, label) for key, label in CURVE_TERMS if curve_series(history, key)]
    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.6), dpi=120, squeeze=False)
    for ax, (key, label) in zip(axes[0], terms, strict=True):
        for split, style, marker in SPLIT_STYLES:
            if split in (series := curve_series(history, key)):
                ax.plot(*series[split], linestyle=style, marker=marker, markersize=4, label=split)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("nats per example")
    fig.suptitle(title or "training curves", fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(
    history: Sequence[Mapping[str, float]], path: str | Path, title: str | None = None
) -> Path:
    """:func:`curves_figure` saved as a PNG; ``title`` names the run (:func:`run_title`)."""
    return _save_figure(curves_figure(history, title), path)


#: Figure 2's default title; the caller adds the run (data, model, epochs)
FIGURE2_TITLE = "Kingma & Welling (2013), Figure 2: lower bound against training samples"


def lower_bound_figure(curves: Mapping[str, Mapping[str, list[float]]], title: str | None = None) -> Figure:
    """Kingma & Welling's Figure 2: train and test lower bound against training samples evaluated.

    curves : one entry per panel title (e.g. 'N_z = 3'), each with equally long lists
        'samples' (training examples seen), 'train' and 'test' (ELBO, nats per example).
    All panels share one y-range, so they compare; train and test differ in line and marker; the
    legend sits below the panels, where it covers no curve; the log x axis has labels at whole
    decades only, so none overlap.
    """
    from matplotlib.ticker import LogLocator, NullFormatter

    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(curves), figsize=(3.0 * len(curves), 3.4), dpi=120, squeeze=False, sharey=True
    )
    for ax, (panel, c) in zip(axes[0], curves.items(), strict=True):
        for split, style, marker in SPLIT_STYLES:
            if split not in c:  # the figure has train and test curves, no validation
                continue
            ax.plot(
                c["samples"],
                c[split],
                color="tab:red",
                linestyle=style,
                marker=marker,
                markersize=4,
                markerfacecolor="white" if split == "test" else "tab:red",
                label=f"AEVB ({split})",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("training samples evaluated", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("lower bound (nats per example)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title or FIGURE2_TITLE, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # the bottom 8% holds the legend
    return fig


def lower_bound_panels(
    curves: Mapping[str, Mapping[str, list[float]]], path: str | Path, title: str | None = None
) -> Path:
    """:func:`lower_bound_figure` saved as a PNG; ``title`` names the run."""
    return _save_figure(lower_bound_figure(curves, title), path)


def sample_grid(
    vae: VAE,
    n: int,
    seed: int,
    label: int | None,
    conditions: ArrayLike | None = None,
    mean: bool = True,
) -> Image.Image:
    """n samples as a picture: all of one label, or (conditional, no label) a row per condition.

    mean : the decoder's means (default), or draws x ~ p(x|z) (see :meth:`VAE.sample`)

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
        return image_grid(vae.sample(len(y), seed=seed, y=y, mean=mean), shape, per_row)
    return image_grid(vae.sample(n, seed=seed, y=label, mean=mean), shape, min(8, n))


PICTURE_ROWS = 32  # held-out rows shown with their reconstructions


def data_pictures(vae: VAE, x_test: np.ndarray, y_test: Any = None) -> dict[str, Image.Image]:
    """The run's pictures of data, by file name, each titled with the run (:func:`run_title`):
    samples, reconstructions (rows labelled data / reconstruction) and the manifold.

    Empty unless the data are images; the manifold only for a 2-D unconditional model. The
    samples have a row of 8 samples per class of a model conditioned on labels, or per each of
    the first 8 conditions in ``y_test`` of a model conditioned on vectors; the reconstructions
    show the first :data:`PICTURE_ROWS` rows of ``x_test`` ``(n, d)``.
    """
    shape = vae.image_shape_
    if shape is None:
        return {}
    y32 = y_test[:PICTURE_ROWS] if vae.conditional and y_test is not None else None
    vectors = y32[:8] if y32 is not None and vae.n_classes_ is None else None
    samples = sample_grid(vae, 8 * (vae.n_classes_ or 8), vae.seed, None, vectors)
    shown = x_test[:PICTURE_ROWS]
    recon = reconstruction_grid(shown, vae.reconstruct(shown, y32), shape)
    pictures = {
        SAMPLES: titled(samples, run_title(vae, "samples")),
        RECONSTRUCTIONS: titled(recon, run_title(vae, "reconstructions"), RECONSTRUCTION_ROWS, shape[1]),
    }
    if vae.latent_dim == 2 and not vae.conditional:
        pictures[MANIFOLD] = titled(manifold_picture(vae, shape), run_title(vae, "latent manifold"))
    return pictures


def write_pictures(vae: VAE, run: Path, x_test: np.ndarray, y_test: Any = None) -> list[Path]:
    """The :func:`data_pictures` (images only) and the curves (every run), written into the run
    folder (:data:`vaekit.runs.PICTURES`)."""
    written = [save_png(picture, run / name) for name, picture in data_pictures(vae, x_test, y_test).items()]
    if vae.history_:
        written.append(training_curves(vae.history_, run / CURVES, run_title(vae)))
    return written
