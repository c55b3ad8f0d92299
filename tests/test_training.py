"""Training learns for real on the packaged MNIST; the estimator keeps scikit-learn conventions."""

import numpy as np
import pytest

from vaekit import VAE, VaekitError


def test_packaged_mnist_is_complete(mnist):
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert float(mnist.x_train.min()) == 0.0 and float(mnist.x_train.max()) == 1.0
    assert sorted(set(mnist.y_test.tolist())) == list(range(10))


def test_short_mnist_run_reaches_a_test_elbo(mnist):
    """Two epochs on 30,000 digits (469 steps) of the default model get the test ELBO above -135 nats."""
    vae = VAE(epochs=2).fit(mnist.x_train[:30000], X_test=mnist.x_test[:2000])
    assert vae.history_[-1]["test_elbo"] > -135.0
    assert vae.score(mnist.x_test[:2000]) > -135.0


def test_seeded_fit_is_deterministic(mnist):
    x = mnist.x_train[:512]
    a = VAE(epochs=1, batch_size=64, seed=3).fit(x).transform(x[:5])
    b = VAE(epochs=1, batch_size=64, seed=3).fit(x).transform(x[:5])
    c = VAE(epochs=1, batch_size=64, seed=4).fit(x).transform(x[:5])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "kw",
    [
        {"estimator": "mc", "samples": 3},
        {"optimizer": "adagrad", "lr": 0.02},
        {"binarize": "dynamic"},
        {"binarize": "static"},
        {"beta": 4.0},
        {"likelihood": "gaussian_fixed", "likelihood_options": {"sigma": 0.3}},
        {"likelihood": "gaussian", "activation": "tanh"},
    ],
)
def test_every_option_lowers_the_loss(mnist, kw):
    x = mnist.x_train[:1000]
    vae = VAE(epochs=3, batch_size=50, hidden=(64,), latent_dim=5, **kw).fit(x, X_test=mnist.x_test[:300])
    assert vae.history_[-1]["train_elbo"] > vae.history_[0]["train_elbo"]


def test_sklearn_protocol_and_outputs(mnist):
    vae = VAE(latent_dim=3, hidden=(32,))
    assert not hasattr(vae, "module_") and vae.get_params()["latent_dim"] == 3
    assert vae.set_params(epochs=1) is vae and vae.epochs == 1
    with pytest.raises(VaekitError):
        vae.set_params(nope=1)
    x = mnist.x_train[:300].numpy().reshape(-1, 28, 28)
    assert vae.fit(x) is vae
    assert vae.n_features_in_ == 784 and vae.image_shape_ == (1, 28, 28)
    assert vae.transform(x).shape == (300, 3)
    assert vae.reconstruct(x[:4]).shape == (4, 784)
    assert vae.sample(7).shape == (7, 784)
    assert vae.inverse_transform(np.zeros((2, 3))).shape == (2, 784)
    before = vae.score(x)
    for _ in range(30):
        vae.partial_fit(x[:100])
    assert vae.score(x) > before


def test_save_load_round_trip(tmp_path, mnist):
    x = mnist.x_test[:200]
    vae = VAE(latent_dim=4, hidden=(32, 16), epochs=1).fit(mnist.x_train[:500])
    vae.save(tmp_path / "m")
    again = VAE.load(tmp_path / "m")
    assert again.get_params() == vae.get_params()
    np.testing.assert_array_equal(again.transform(x), vae.transform(x))
    np.testing.assert_array_equal(again.sample(5), vae.sample(5))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((5, 4), np.nan), "NaN"),
        (np.zeros((0, 4)), "empty"),
        (np.zeros(4), "shape"),
        (np.full((5, 4), 3.0), "[0, 1]"),
        (np.array([["a"]] * 3), "expected numbers"),
    ],
)
def test_bad_arrays_get_clear_errors(bad, message):
    with pytest.raises(VaekitError, match=message.replace("[", r"\[").replace("]", r"\]")):
        VAE(epochs=1).fit(bad)


def test_bad_hyperparameters_and_unfitted_use():
    with pytest.raises(VaekitError, match="activation"):
        VAE(activation="gelu").fit(np.zeros((4, 4)))
    with pytest.raises(VaekitError, match="not fitted"):
        VAE().transform(np.zeros((2, 4)))


def test_log_likelihood_of_a_trained_mnist_model_lies_between_elbo_and_elbo_plus_kl(mnist):
    """300 steps on dynamically binarized digits; on a fixed binarization of 100 test digits,
    ELBO < log p(x) (k = 1000) < ELBO + KL, the KL being KL(q(z|x) || p(z))."""
    from vaekit.evaluate import elbo_summary

    vae = VAE(latent_dim=10, hidden=(200,), binarize="dynamic", epochs=3, batch_size=100, seed=1)
    vae.fit(mnist.x_train[:10000])
    x = vae.eval_targets(mnist.x_test[:100])  # binarized once, with the run's held-out seed
    bound = elbo_summary(vae.module_, x, samples=1000)  # recon to Monte Carlo precision; KL exact
    log_px = vae.score_samples(x, k=1000).mean()
    assert bound["elbo"] + 1.0 < log_px < bound["elbo"] + bound["kl"] - 1.0
