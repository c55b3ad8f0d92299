"""What the figures show, read from their matplotlib objects and PNGs: titles naming the run,
labelled rows, whole-number epoch ticks, Figure 2's shared y-range, distinct markers and legend."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit import VAE, plots

HISTORY = [
    {
        "epoch": e,
        "train_elbo": -150.0 + 5 * e,
        "train_recon": -130.0 + 4 * e,
        "train_kl": 20.0 + e,
        "test_elbo": -148.0 + 5 * e,
        "test_recon": -127.0 + 4 * e,
        "test_kl": 21.0 + e,
    }
    for e in range(1, 8)
]
CURVES = {
    f"N_z = {j}": {
        "samples": [60_000 * e for e in range(1, 21)],
        "train": [top - 60 / np.sqrt(e) for e in range(1, 21)],
        "test": [top - 62 / np.sqrt(e) for e in range(1, 21)],
    }
    for j, top in [(3, -125.0), (5, -110.0), (10, -100.0), (20, -96.0), (200, -98.0)]
}


@pytest.fixture(scope="module")
def vae():
    """A 2-D model of 8x8 binary images fitted for 2 epochs, with a recorded source."""
    rng = np.random.default_rng(0)
    x = (rng.random((200, 64)) < 0.3).astype(np.float32)
    model = VAE(latent_dim=2, hidden=(16,), epochs=2, binarize="none").fit(x[:160], X_test=x[160:])
    model.source_ = {"data": "/data/dots.npz", "resize": None}
    return model, x[160:]


def _close(fig):
    plots._pyplot().close(fig)


def test_curves_show_elbo_reconstruction_and_kl_with_whole_epoch_ticks():
    fig = plots.curves_figure(HISTORY, "dots.npz, 64-16-2 MLP VAE, bernoulli, 7 epochs")
    try:
        fig.canvas.draw()
        axes = fig.axes
        assert [ax.get_title() for ax in axes] == [label for _, label in plots.CURVE_TERMS]
        assert fig._suptitle.get_text() == "dots.npz, 64-16-2 MLP VAE, bernoulli, 7 epochs"
        for ax, (key, _) in zip(axes, plots.CURVE_TERMS, strict=True):
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
            train, test = ax.get_lines()
            assert list(train.get_ydata()) == [row[f"train_{key}"] for row in HISTORY]
            assert list(test.get_ydata()) == [row[f"test_{key}"] for row in HISTORY]
            assert train.get_marker() != test.get_marker() and train.get_linestyle() != test.get_linestyle()
            assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]
    finally:
        _close(fig)


def test_curves_of_a_run_without_a_test_split_or_terms_draw_what_there_is():
    fig = plots.curves_figure([{"epoch": 1, "train_elbo": -5.0}, {"epoch": 2, "train_elbo": -4.0}])
    try:
        assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    finally:
        _close(fig)


def _overlaps(labels):
    boxes = [t.get_window_extent() for t in labels if t.get_visible() and t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_figure_2_panels_share_a_y_range_and_show_every_curve():
    fig = plots.lower_bound_figure(CURVES, "Figure 2: mnist, 784-500-J tanh VAE, 20 epochs")
    try:
        fig.canvas.draw()
        axes = fig.axes
        assert len(axes) == 5 and len({ax.get_ylim() for ax in axes}) == 1  # one shared y-range
        lo, hi = axes[0].get_ylim()
        every = np.concatenate([c[s] for c in CURVES.values() for s in ("train", "test")])
        assert lo <= every.min() and every.max() <= hi  # the range holds every panel's curves
        assert fig._suptitle.get_text() == "Figure 2: mnist, 784-500-J tanh VAE, 20 epochs"
        assert [ax.get_title() for ax in axes] == list(CURVES)
        for ax in axes:
            train, test = ax.get_lines()
            assert train.get_marker() != test.get_marker()
            assert train.get_markerfacecolor() != test.get_markerfacecolor()
            assert not _overlaps(ax.get_xticklabels()) and not _overlaps(ax.get_yticklabels())
            assert sum(bool(t.get_text()) for t in ax.get_xticklabels()) >= 1
        # one legend for the figure, an entry per curve kind, outside every panel
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == ["AEVB (train)", "AEVB (test)"]
        box = legend.get_window_extent()
        assert all(not box.overlaps(ax.get_window_extent()) for ax in axes)
    finally:
        _close(fig)


def test_figure_2_png_is_written(tmp_path):
    path = plots.lower_bound_panels(CURVES, tmp_path / "figure2.png")
    assert Image.open(path).width > 5 * 200


def test_run_title_names_data_model_and_epochs(vae):
    model, _ = vae
    assert plots.run_title(model) == "dots.npz, 64-16-2 MLP VAE, bernoulli (grey levels), 2 epochs"
    assert plots.run_title(model, "samples").startswith("samples: dots.npz")


def test_run_pictures_carry_the_run_title_and_labelled_rows(vae, tmp_path):
    model, x_test = vae
    written = plots.write_pictures(model, tmp_path, x_test)
    assert {p.name for p in written} == {"samples.png", "reconstructions.png", "manifold.png", "curves.png"}
    for name, what in [
        ("samples", "samples"),
        ("reconstructions", "reconstructions"),
        ("manifold", "latent manifold"),
    ]:
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.text["Title"] == plots.run_title(model, what)
            band = np.asarray(im.convert("L"))[: plots.TITLE_BAND]
            assert (band < 128).sum() > 50  # the title's ink
    # the reconstruction grid sits unchanged right of the row labels, below the title
    grid = plots.reconstruction_grid(x_test[:32], model.reconstruct(x_test[:32]), (1, 8, 8))
    with Image.open(tmp_path / "reconstructions.png") as im:
        pixels = np.asarray(im)
    margin = plots.label_margin(plots.RECONSTRUCTION_ROWS)
    np.testing.assert_array_equal(pixels[plots.TITLE_BAND :, margin : margin + grid.width], np.asarray(grid))
    margin_ink = pixels[plots.TITLE_BAND :, :margin] < 128  # the labels' ink, row by row
    row = (8 + plots.PAD) * plots.SCALE
    inked_rows = [margin_ink[plots.PAD * plots.SCALE + i * row :][:row].any() for i in range(8)]
    assert all(inked_rows)  # 'data' / 'reconstruction' beside each of the 8 rows


def test_titled_labels_rows_with_the_given_words():
    picture = plots.image_grid(np.zeros((4, 16)), (1, 4, 4), 2)  # 2 rows of black tiles
    out = plots.titled(picture, "t", plots.RECONSTRUCTION_ROWS, tile_height=4)
    assert out.info["Title"] == "t" and out.height == picture.height + plots.TITLE_BAND
    margin = plots.label_margin(plots.RECONSTRUCTION_ROWS)
    assert margin > 40 and out.width == picture.width + margin  # 'reconstruction' fits beside the rows
    pixels = np.asarray(out)
    np.testing.assert_array_equal(pixels[plots.TITLE_BAND :, margin:], np.asarray(picture))
    row = (4 + plots.PAD) * plots.SCALE
    for i in range(2):  # ink beside each row of tiles
        rows = pixels[plots.TITLE_BAND + plots.PAD * plots.SCALE + i * row :][: 4 * plots.SCALE, :margin]
        assert (rows < 128).any()


def test_curves_png_of_a_run_is_titled(vae, tmp_path):
    model, _ = vae
    path = plots.training_curves(model.history_, tmp_path / "c.png", plots.run_title(model))
    assert Path(path).exists() and Image.open(path).width > 3 * 300
