"""Anomaly scores (importance-sampled NLL, reconstruction error), their AUROC, and `vaekit score`."""

import itertools

import numpy as np
import pytest
import torch

from vaekit import VAE
from vaekit.cli import main
from vaekit.evaluate import anomaly_scores, auroc


def _auroc_by_pairs(neg, pos):
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for n, p in itertools.product(neg, pos)])


def test_auroc_hand_computed_cases():
    assert auroc([0.1, 0.4], [0.35, 0.8]) == 0.75  # 3 of the 4 (negative, positive) pairs are ordered
    assert auroc([1, 2, 2], [2, 3]) == pytest.approx(5 / 6)  # ties count one half
    assert auroc([1, 2], [3, 4]) == 1.0 and auroc([3, 4], [1, 2]) == 0.0 and auroc([5, 5], [5]) == 0.5
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 20, 300), rng.integers(5, 25, 200)  # many ties
    assert auroc(neg, pos) == pytest.approx(_auroc_by_pairs(neg, pos), abs=1e-12)
    with pytest.raises(ValueError):
        auroc([], [1.0])


@pytest.fixture(scope="module")
def small_vae(mnist):
    return VAE(latent_dim=8, hidden=(64,), epochs=2).fit(mnist.x_train[:3000])


def test_scores_are_the_nll_and_squared_error_and_flag_outliers(small_vae, mnist):
    x = mnist.x_test[:200]
    scores = anomaly_scores(small_vae.module_, x, k=50, seed=3)
    np.testing.assert_allclose(scores["nll"].numpy(), -small_vae.score_samples(x, k=50, seed=3), rtol=1e-6)
    error = ((x.numpy() - small_vae.reconstruct(x)) ** 2).sum(1)
    np.testing.assert_allclose(scores["recon_error"].numpy(), error, rtol=1e-5)
    inverted = anomaly_scores(small_vae.module_, 1.0 - x, k=50)  # white digits on black: not MNIST
    for name in ("nll", "recon_error"):
        assert auroc(scores[name].numpy(), inverted[name].numpy()) > 0.95


def test_cli_score_writes_the_csv(small_vae, tmp_path, mnist_subset, capsys):
    small_vae.save(tmp_path / "run")
    out = tmp_path / "scores.csv"
    assert (
        main(["score", str(tmp_path / "run"), "--data", str(mnist_subset), "--k", "20", "-o", str(out)]) == 0
    )
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert out.read_text().startswith("index,nll,recon_error\n") and table.shape == (200, 3)
    x = torch.from_numpy(np.load(mnist_subset)["x_test"].reshape(200, -1) / np.float32(255))
    expected = anomaly_scores(small_vae.module_, x, k=20)
    np.testing.assert_allclose(table[:, 1], expected["nll"].numpy(), atol=1e-4)
    np.testing.assert_allclose(table[:, 2], expected["recon_error"].numpy(), atol=1e-4)
    assert main(["score", str(tmp_path / "run"), "--data", str(mnist_subset), "--k", "0"]) == 2
    assert "positive" in capsys.readouterr().err
