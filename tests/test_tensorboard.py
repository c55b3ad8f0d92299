"""TensorBoardLog: the event files read back hold each epoch's metrics, KL per dimension and pictures."""

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, VaekitError, plots, runs
from vaekit.evaluate import latent_usage
from vaekit.stopping import VALIDATION_PREFIX
from vaekit.tensorboard import ACTIVE_UNITS, SCALARS, STEPS_PER_SECOND, TensorBoardLog, image_tag, kl_tag

N_TRAIN, N_TEST, BATCH, EPOCHS = 300, 100, 50, 2


def _vae(conditional=False):
    return VAE(
        latent_dim=2, hidden=(32,), epochs=EPOCHS, batch_size=BATCH, conditional=conditional, verbose=False
    )


def _data(mnist):
    return (
        mnist.x_train[:N_TRAIN].numpy(),
        mnist.y_train[:N_TRAIN].numpy(),
        mnist.x_test[:N_TEST].numpy(),
        mnist.y_test[:N_TEST].numpy(),
    )


def _read(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("conditional", [False, True])
def test_event_files_hold_each_scalar_per_epoch_and_the_pictures(mnist, tmp_path, conditional):
    pytest.importorskip("tensorboard")  # the test extra installs it, so CI runs these tests
    x, y, x_test, y_test = _data(mnist)
    vae = _vae(conditional)
    folder = tmp_path / runs.TENSORBOARD
    labels = y_test if conditional else None
    with TensorBoardLog(vae, folder, x_test, labels) as log:
        vae.fit(x, y if conditional else None, X_test=x_test, y_test=labels, on_epoch_end=log)
    acc = _read(folder)
    epochs = list(range(1, EPOCHS + 1))
    for key, tag in SCALARS.items():  # float32 in the event file
        if key.startswith(VALIDATION_PREFIX):  # this run holds out no validation split
            assert tag not in acc.Tags()["scalars"]
            continue
        events = acc.Scalars(tag)
        assert [e.step for e in events] == epochs
        np.testing.assert_allclose([e.value for e in events], [r[key] for r in vae.history_], rtol=1e-6)
    steps = N_TRAIN // BATCH  # per epoch
    rates = [e.value for e in acc.Scalars(STEPS_PER_SECOND)]
    np.testing.assert_allclose(rates, [steps / r["seconds"] for r in vae.history_], rtol=1e-5)
    # the KL of each latent dimension, on the test rows, adds up to the test KL of that epoch
    kl = np.array([[e.value for e in acc.Scalars(kl_tag(j, 2))] for j in range(2)])  # (J, epochs)
    np.testing.assert_allclose(kl.sum(0), [r["test_kl"] for r in vae.history_], rtol=1e-5)
    cond = vae._cond(labels, N_TEST)
    final = latent_usage(vae.module_, torch.from_numpy(x_test), cond)
    np.testing.assert_allclose(kl[:, -1], final["kl_per_dim"], rtol=1e-6)
    assert acc.Scalars(ACTIVE_UNITS)[-1].value == final["active_units"]
    # the pictures of each epoch; the last ones equal the run's own pictures pixel for pixel
    pictures = plots.data_pictures(vae, x_test, labels)
    assert {runs.SAMPLES, runs.RECONSTRUCTIONS} <= set(pictures)
    assert (runs.MANIFOLD in pictures) == (not conditional)
    assert sorted(acc.Tags()["images"]) == sorted(image_tag(name) for name in pictures)
    for name, picture in pictures.items():
        events = acc.Images(image_tag(name))
        assert [e.step for e in events] == epochs
        logged = np.asarray(Image.open(io.BytesIO(events[-1].encoded_image_string)).convert(picture.mode))
        np.testing.assert_array_equal(logged, np.asarray(picture))


def test_logging_leaves_training_unchanged(mnist, tmp_path):
    pytest.importorskip("tensorboard")
    x, _, x_test, _ = _data(mnist)
    plain = _vae().fit(x, X_test=x_test)
    logged = _vae()
    with TensorBoardLog(logged, tmp_path, x_test) as log:
        logged.fit(x, X_test=x_test, on_epoch_end=log)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(logged.history_) == drop(plain.history_)
    for a, b in zip(plain.module_.state_dict().values(), logged.module_.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_missing_tensorboard_is_one_line_naming_the_extra(mnist, tmp_path, monkeypatch):
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    with pytest.raises(
        VaekitError, match=r"^tensorboard: not installed; .*pip install 'vaekit\[tensorboard\]'$"
    ):
        TensorBoardLog(_vae(), tmp_path, mnist.x_test[:10])


def test_train_tensorboard_logs_the_run_and_overwrite_starts_the_events_afresh(tmp_path, mnist_subset):
    pytest.importorskip("tensorboard")
    from vaekit.cli import main

    run = tmp_path / "run"
    flags = ["--data", str(mnist_subset), "--hidden", "16", "--latent-dim", "2", "--quiet", "--tensorboard"]
    assert main(["train", *flags, "--epochs", "2", "-o", str(run)]) == 0
    rows = runs.Run(run).read_metrics()
    logged = [(e.step, e.value) for e in _read(run / runs.TENSORBOARD).Scalars(SCALARS["test_elbo"])]
    assert logged == [(r["epoch"], pytest.approx(r["test_elbo"], rel=1e-6)) for r in rows]
    assert main(["train", *flags, "--epochs", "1", "-o", str(run), "--overwrite"]) == 0
    assert [e.step for e in _read(run / runs.TENSORBOARD).Scalars(SCALARS["test_elbo"])] == [1]
