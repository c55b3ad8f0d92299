"""Standardization of real-valued columns (vaekit.scaling): numbers in the data's own units."""

import json
import math

import numpy as np
import pytest
import torch

from vaekit import VAE
from vaekit.errors import VaekitError
from vaekit.runs import CONFIG
from vaekit.scaling import ColumnStats, Standardizer

SCALES = np.array([1e-3, 1e-1, 1.0, 1e2, 1e4])
MEANS = np.array([5.0, -2.0, 0.0, 300.0, -4e4])


def _columns(n=400, seed=0):
    """Correlated Gaussian columns (one latent factor plus noise) on scales 1e-3 .. 1e4."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(n, 1))
    u = 0.8 * factor + 0.6 * rng.normal(size=(n, len(SCALES)))
    return (u * SCALES + MEANS).astype(np.float32)


def _fit(x, **params):
    settings = dict(likelihood="gaussian", latent_dim=2, hidden=(16,), epochs=3, batch_size=50) | params
    return VAE(**settings).fit(x[:300], X_test=x[300:])


@pytest.fixture(scope="module")
def fitted():
    x = _columns()
    return x, _fit(x)


def _twin(vae, u):
    """An unstandardized VAE with ``vae``'s weights: it models the standardized rows u directly."""
    twin = VAE(likelihood="gaussian", latent_dim=2, hidden=(16,), standardize="off").partial_fit(u[:2])
    weights = {k: v for k, v in vae.module_.state_dict().items() if not k.startswith("scaler.")}
    twin.module_.load_state_dict(weights)
    return twin


def _standardized(vae, x):
    mean, scale = (b.double().numpy() for b in (vae.module_.scaler.mean, vae.module_.scaler.scale))
    return ((x - mean) / scale).astype(np.float32), float(np.log(scale).sum())


def test_mean_and_scale_are_the_training_split_s(fitted):
    x, vae = fitted
    np.testing.assert_allclose(vae.module_.scaler.mean.numpy(), x[:300].astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(vae.module_.scaler.scale.numpy(), x[:300].astype(np.float64).std(0), rtol=1e-6)


def test_reported_elbo_is_the_standardized_elbo_minus_the_log_determinant(fitted):
    x, vae = fitted
    u, log_det = _standardized(vae, x[300:])
    by_hand = _twin(vae, u).score(u) - log_det  # the same weights and draws on standardized rows
    assert abs(log_det) > 4  # the shift is large enough that leaving it out would show
    assert vae.history_[-1]["test_elbo"] == pytest.approx(by_hand, rel=1e-5, abs=1e-3)
    assert vae.score(x[300:]) == pytest.approx(by_hand, rel=1e-5, abs=1e-3)


def test_importance_sampled_log_px_and_eval_are_in_the_data_s_units(fitted):
    x, vae = fitted
    u, log_det = _standardized(vae, x[300:])
    twin = _twin(vae, u)
    np.testing.assert_allclose(
        vae.score_samples(x[300:], k=50, seed=3),
        twin.score_samples(u, k=50, seed=3) - log_det,
        rtol=1e-5,
        atol=1e-3,
    )
    ours, theirs = vae.evaluate(x[300:], k=20), twin.evaluate(u, k=20)
    assert ours["log_px"] == pytest.approx(theirs["log_px"] - log_det, rel=1e-5, abs=1e-3)
    assert ours["kl"] == pytest.approx(theirs["kl"], rel=1e-5)  # the KL does not depend on the units


def test_rescaling_a_column_shifts_the_scores_by_its_log_scale_only():
    x = _columns()
    rescaled = x.copy()
    rescaled[:, 2] = rescaled[:, 2] * 1000.0 + 7.0
    a, b = _fit(x), _fit(rescaled)
    assert b.score(rescaled[300:]) == pytest.approx(a.score(x[300:]) - math.log(1000.0), abs=0.05)
    shift = b.score_samples(rescaled[300:], k=20) - a.score_samples(x[300:], k=20)
    np.testing.assert_allclose(shift, -math.log(1000.0), atol=0.05)


def test_standardizer_round_trip_and_outputs_in_the_data_s_units(fitted):
    x, vae = fitted
    scaler = vae.module_.scaler
    t = torch.from_numpy(x)
    np.testing.assert_allclose(
        scaler.inverse(scaler(t)).numpy(), x, rtol=1e-5, atol=1e-6 * np.abs(MEANS).max()
    )
    assert scaler(t[:300]).double().std(0, correction=0).numpy() == pytest.approx(
        np.ones(len(SCALES)), rel=1e-4
    )
    # decoder means and draws come back on each column's own scale and location
    recon, draws = vae.reconstruct(x), vae.sample(2000, seed=1, mean=False)
    assert np.all(np.abs(recon.mean(0) - x.mean(0)) < SCALES)
    ratio = draws.std(0) / x.std(0)
    assert np.all((ratio > 0.3) & (ratio < 3)), ratio


def test_save_and_load_keep_the_standardization(fitted, tmp_path):
    x, vae = fitted
    vae.save(tmp_path)
    config = json.loads((tmp_path / CONFIG).read_text())
    assert config["params"]["standardize"] == "auto" and config["standardized"] is True
    loaded = VAE.load(tmp_path)
    assert torch.equal(loaded.module_.scaler.scale, vae.module_.scaler.scale)
    assert torch.equal(loaded.module_.scaler.mean, vae.module_.scaler.mean)
    assert loaded.score(x[300:]) == vae.score(x[300:])
    np.testing.assert_array_equal(loaded.reconstruct(x[:5]), vae.reconstruct(x[:5]))


def test_constant_columns_get_scale_one_and_finite_numbers():
    x = _columns()
    x[:, 1] = 7.25  # constant
    x[:, 3] = 0.0  # constant zero
    vae = _fit(x)
    assert vae.module_.scaler.scale[[1, 3]].tolist() == [1.0, 1.0]
    assert all(np.isfinite(v) for row in vae.history_ for v in row.values())
    assert np.isfinite(vae.score(x[300:])) and np.isfinite(vae.score_samples(x[300:], k=10)).all()
    stats = ColumnStats.of(torch.from_numpy(x))
    assert stats.constant.tolist() == [False, True, False, True, False]
    assert "2 constant columns (col 2, 4)" in stats.describe(standardized=True)
    sd = x.astype(np.float64).std(0)  # the range leaves the constant columns out
    assert f"standardized 5 columns; scales from {sd[0]:.3g} to {sd[4]:.3g};" in stats.describe(True)


def test_off_gives_the_unstandardized_model_and_old_configs_load_as_off(fitted, tmp_path):
    x, standardized = fitted
    vae = _fit(x, standardize="off")
    assert vae.module_.scaler is None and "scaler.mean" not in vae.module_.state_dict()
    assert vae.history_[-1]["test_elbo"] < standardized.history_[-1]["test_elbo"] - 100
    vae.save(tmp_path)
    config = json.loads((tmp_path / CONFIG).read_text())
    del config["params"]["standardize"], config["standardized"]  # as vaekit wrote it before
    (tmp_path / CONFIG).write_text(json.dumps(config))
    loaded = VAE.load(tmp_path)
    assert loaded.module_.scaler is None and loaded.score(x[300:]) == vae.score(x[300:])


def test_auto_leaves_images_and_bernoulli_alone_and_on_needs_a_real_line_likelihood():
    rng = np.random.default_rng(0)
    images = rng.random((20, 4, 4)).astype(np.float32)
    assert VAE(likelihood="gaussian", hidden=(8,), epochs=1).fit(images).module_.scaler is None
    flat = images.reshape(20, 16)  # rows of a square width are taken for images (4x4)
    assert VAE(likelihood="gaussian", hidden=(8,), epochs=1).fit(flat).module_.scaler is None
    rows = flat[:, :15]
    assert VAE(likelihood="gaussian", hidden=(8,), epochs=1).fit(rows).module_.scaler is not None
    assert VAE(hidden=(8,), epochs=1).fit(rows).module_.scaler is None  # bernoulli
    with pytest.raises(VaekitError, match="standardize 'on' needs a likelihood on the real line"):
        VAE(standardize="on").configs()


def test_a_fresh_standardizer_is_the_identity():
    x = torch.randn(5, 3)
    assert torch.equal(Standardizer(3)(x), x) and Standardizer(3).log_det() == 0
