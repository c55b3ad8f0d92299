"""Figure commands: each PNG is checked for what it shows, not only for existing."""

import json

import numpy as np
import pytest
from PIL import Image

from vaekit import VAE, plots
from vaekit.cli import main
from vaekit.plots import (
    PAD,
    SCALE,
    TITLE_BAND,
    curve_series,
    image_grid,
    latent_scatter,
    manifold_latents,
    principal_components,
)
from vaekit.storage import read_jsonl


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, mnist):
    """600 train and 100 test digits with their labels, as an .npz."""
    path = tmp_path_factory.mktemp("data") / "labelled.npz"
    to_u8 = lambda x: (x.numpy().reshape(-1, 28, 28) * 255).round().astype(np.uint8)  # noqa: E731
    np.savez(
        path,
        x_train=to_u8(mnist.x_train[:600]),
        x_test=to_u8(mnist.x_test[:100]),
        y_train=mnist.y_train[:600].numpy(),
        y_test=mnist.y_test[:100].numpy(),
    )
    return path


@pytest.fixture(scope="module")
def run2d(tmp_path_factory, labelled):
    out = tmp_path_factory.mktemp("runs") / "r2"
    argv = [
        "train",
        "--data",
        str(labelled),
        "--epochs",
        "4",
        "--batch-size",
        "20",
        "--latent-dim",
        "2",
        "--hidden",
        "64",
    ]
    assert main([*argv, "--quiet", "-o", str(out)]) == 0
    return out


def _tiles(path, n, side=28):
    """The n 28x28 tiles of a one-row image_grid PNG under its title band, as floats in [0, 1]."""
    canvas = np.asarray(Image.open(path), dtype=np.float32)[TITLE_BAND:][::SCALE, ::SCALE] / 255
    return np.stack(
        [canvas[PAD : PAD + side, PAD + i * (side + PAD) :][:, :side].reshape(-1) for i in range(n)]
    )


def test_interpolation_strip_runs_from_one_reconstruction_to_the_other(run2d, labelled, tmp_path, capsys):
    png = tmp_path / "i.png"
    assert (
        main(
            [
                "plot",
                "interpolate",
                str(run2d),
                "--data",
                str(labelled),
                "--pair",
                "3",
                "7",
                "--steps",
                "6",
                "-o",
                str(png),
            ]
        )
        == 0
    )
    tiles = _tiles(png, 8)
    x = np.load(labelled)["x_test"].reshape(-1, 784) / 255
    vae = VAE.load(run2d)
    recon = vae.reconstruct(x[[3, 7]].astype(np.float32))
    tol = 0.5 / 255 + 1e-6  # 8-bit rounding
    np.testing.assert_allclose(tiles[0], x[3], atol=tol)
    np.testing.assert_allclose(tiles[7], x[7], atol=tol)
    np.testing.assert_allclose(tiles[1], recon[0], atol=tol)
    np.testing.assert_allclose(tiles[6], recon[1], atol=tol)
    # the middle decodes the midpoint-ish latent, different from both ends
    assert np.abs(tiles[3] - tiles[1]).max() > 0.05 and np.abs(tiles[3] - tiles[6]).max() > 0.05


def test_manifold_command_draws_the_figure_4_grid(run2d, tmp_path, capsys):
    png = tmp_path / "m.png"
    assert main(["plot", "manifold", str(run2d), "-o", str(png)]) == 0
    expected = image_grid(VAE.load(run2d).inverse_transform(manifold_latents(20)), (1, 28, 28), 20)
    grid = np.asarray(Image.open(png))[TITLE_BAND:]  # under the title, at the left edge
    np.testing.assert_array_equal(grid[:, : expected.width], np.asarray(expected))


def test_principal_components_match_numpy_eigendecomposition():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 5)) @ rng.normal(size=(5, 5)) + 3.0
    coords = principal_components(z, 2)
    values, vectors = np.linalg.eigh(np.cov(z, rowvar=False))
    top = vectors[:, np.argsort(values)[::-1][:2]]  # (5, 2), the two largest
    reference = (z - z.mean(0)) @ top
    np.testing.assert_allclose(np.abs(coords), np.abs(reference), atol=1e-8)  # the same up to each sign
    np.testing.assert_allclose(coords.var(0, ddof=1), np.sort(values)[::-1][:2], rtol=1e-8)


def test_scatter_of_a_2d_latent_is_the_posterior_means_coloured_by_label(run2d, labelled, tmp_path, capsys):
    vae = VAE.load(run2d)
    z = vae.transform(np.load(labelled)["x_test"])
    coords = latent_scatter(z, np.load(labelled)["y_test"], tmp_path / "s.png")
    np.testing.assert_array_equal(coords, z)
    assert main(["plot", "scatter", str(run2d), "--data", str(labelled), "-o", str(tmp_path / "c.png")]) == 0
    rgb = np.asarray(Image.open(tmp_path / "c.png").convert("RGB")).reshape(-1, 3)
    saturated = rgb[(rgb.max(1) - rgb.min(1)) > 60]  # coloured pixels: points and colour bar
    assert len(np.unique(saturated // 32, axis=0)) >= 5  # several label colours, not one


def test_curves_plot_the_values_of_metrics_jsonl(run2d, tmp_path, capsys):
    rows = read_jsonl(run2d / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    series = curve_series(rows)
    assert series["train"] == ([1, 2, 3, 4], [r["train_elbo"] for r in rows])
    assert series["test"] == ([1, 2, 3, 4], [r["test_elbo"] for r in rows])
    assert main(["plot", "curves", str(run2d), "-o", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").width > 300
    assert curve_series([{"epoch": 1, "train_elbo": -5.0}]) == {"train": ([1], [-5.0])}  # no test column


def test_plot_errors_are_one_line(run2d, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bad / name).write_bytes((run2d / name).read_bytes())
    (bad / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_elbo": -1.0}) + "\n{oops\n")
    for argv, message in [
        (["plot", "curves", str(bad)], "metrics.jsonl: line 2"),
        (["plot", "interpolate", str(run2d), "--pair", "0", "100000"], "--pair"),
        (["plot", "manifold", str(tmp_path / "none")], "no such model folder"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vaekit: error:") and message in err and "\n" not in err


def test_every_plot_kind_is_titled_with_the_run(run2d, tmp_path):
    """vaekit plot's PNGs carry the run's title (data, model, epochs) as their Title text."""
    title = plots.run_title(VAE.load(run2d))
    assert "labelled.npz" in title and "4 epochs" in title
    for kind, what in [
        ("curves", ""),
        ("manifold", "latent manifold"),
        ("scatter", "posterior means of"),
        ("interpolate", "interpolation 0 to 1"),
    ]:
        out = tmp_path / f"{kind}.png"
        assert main(["plot", kind, str(run2d), "-o", str(out)]) == 0
        with Image.open(out) as im:
            assert im.text["Title"].startswith(what) and im.text["Title"].endswith(title), kind
