"""The conditional VAE (Doersch 2016, section 3): samples for label c look like class c."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, VaekitError
from vaekit.cli import main
from vaekit.config import CONDITIONAL_LATENT_DIM
from vaekit.plots import TITLE_BAND


def _nearest_class_mean(x, labels):
    """A classifier with no training loop: the label of the closest class-mean image."""
    means = torch.stack([x[labels == c].mean(0) for c in range(10)])  # (10, d)
    return lambda images: torch.cdist(torch.as_tensor(images), means).argmin(1)


@pytest.fixture(scope="module")
def cvae(mnist):
    return VAE(conditional=True, latent_dim=2, hidden=(256,), epochs=4).fit(
        mnist.x_train[:12000], mnist.y_train[:12000]
    )


def test_samples_for_label_c_are_classified_as_c(cvae, mnist):
    """Measured (seed 0): 74% of 500 samples classified as their label; the classifier: 79% on real digits."""
    predict = _nearest_class_mean(mnist.x_train[20000:30000], mnist.y_train[20000:30000])
    held_out = (predict(mnist.x_test[:2000]) == mnist.y_test[:2000]).float().mean()
    assert held_out > 0.75  # the classifier itself is sound
    labels = np.repeat(np.arange(10), 50)
    accuracy = (predict(cvae.sample(500, seed=1, y=labels)) == torch.from_numpy(labels)).float().mean()
    assert accuracy > 0.6  # chance is 0.1
    # the label, not the latent, decides the class: one z decoded under every label
    z = np.repeat(np.random.default_rng(0).standard_normal((1, 2)), 10, axis=0).astype(np.float32)
    assert (predict(cvae.inverse_transform(z, np.arange(10))) == torch.arange(10)).float().mean() >= 0.7


def test_conditional_save_load_and_condition_checks(cvae, mnist, tmp_path):
    cvae.save(tmp_path / "m")
    again = VAE.load(tmp_path / "m")
    assert again.n_classes_ == 10 and again.module_.cond_dim == 10
    np.testing.assert_array_equal(again.sample(6, seed=1, y=3), cvae.sample(6, seed=1, y=3))
    x, y = mnist.x_test[:50], mnist.y_test[:50]
    np.testing.assert_array_equal(again.transform(x, y), cvae.transform(x, y))
    assert cvae.score(x, y) > cvae.score(x, (y + 1) % 10)  # the right label explains x better
    with pytest.raises(VaekitError, match="conditional"):
        cvae.sample(4)
    with pytest.raises(VaekitError, match="label 12"):
        cvae.sample(4, y=12)
    with pytest.raises(VaekitError, match="rows"):
        cvae.transform(x, y[:10])
    with pytest.raises(VaekitError, match="conditional"):
        VAE(conditional=True, epochs=1).fit(mnist.x_train[:100])
    with pytest.raises(VaekitError, match="conditional"):
        VAE(conditional=True).partial_fit(mnist.x_train[:100])


def test_condition_vectors(mnist):
    """Any float vector per example may be the condition; its width is kept."""
    x = mnist.x_train[:300]
    c = np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32)
    vae = VAE(conditional=True, latent_dim=2, hidden=(32,), epochs=1).fit(x, c)
    assert vae.module_.cond_dim == 3 and vae.n_classes_ is None
    assert vae.sample(5, y=c[:5]).shape == (5, 784)
    with pytest.raises(VaekitError, match=r"\(n, 3\)"):
        vae.sample(5, y=np.zeros((5, 2)))


def test_cli_conditional_run(tmp_path, mnist, capsys):
    data = tmp_path / "labelled.npz"
    to_u8 = lambda x: (x.numpy().reshape(-1, 28, 28) * 255).round().astype(np.uint8)  # noqa: E731
    np.savez(
        data,
        x_train=to_u8(mnist.x_train[:1000]),
        y_train=mnist.y_train[:1000].numpy(),
        x_test=to_u8(mnist.x_test[:100]),
        y_test=mnist.y_test[:100].numpy(),
    )
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--conditional", "--epochs", "1", "--hidden", "32", "--quiet"]
    assert main([*argv, "-o", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["n_classes"] == 10 and config["params"]["latent_dim"] == CONDITIONAL_LATENT_DIM != 20
    with Image.open(run / "samples.png") as im:  # one row of 8 per class (plots.SCALE = 2, PAD = 2)
        grid = np.asarray(im)[TITLE_BAND:]  # below the run's title
        assert grid.shape[0] == (10 * (28 + 2) + 2) * 2 and im.width >= (8 * (28 + 2) + 2) * 2
        assert (
            grid[:, (8 * (28 + 2) + 2) * 2 :] == 255
        ).all()  # white beyond the 8 columns, if the title is wider
    assert main(["sample", str(run), "--label", "7", "-n", "16", "-o", str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.height == (2 * (28 + 2) + 2) * 2
    assert main(["eval", str(run), "--data", str(data), "--k", "20"]) == 0
    capsys.readouterr()
    unlabelled = tmp_path / "x.npy"
    np.save(unlabelled, mnist.x_test[:5].numpy())
    assert main(["encode", str(run), "--data", str(unlabelled), "-o", str(tmp_path / "z.npy")]) == 2
    assert "has no labels" in capsys.readouterr().err
    assert main(["sample", str(run), "--label", "10"]) == 2
    assert "label 10" in capsys.readouterr().err
