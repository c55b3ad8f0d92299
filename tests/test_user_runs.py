"""Runs on a user's own file: the held-out split that eval uses, --overwrite, divergence, interrupts."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaekit import VAE
from vaekit.cli import main
from vaekit.errors import VaekitError

TINY = ["--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 binary 8x8 images in one .npy file (train holds out 30 of them)."""
    path = tmp_path_factory.mktemp("data") / "img.npy"
    np.save(path, (np.random.default_rng(0).random((300, 8, 8)) > 0.5).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main(["train", "--data", str(data), *TINY, "-o", str(out)]) == 0
    return out


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error:") and "\n" not in err and "Traceback" not in err
    return err


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_eval_uses_the_runs_data_and_its_held_out_split(run, data, capsys):
    """Not every row of the file (270 of them were trained on): the 30 train held out, by default."""
    assert main(["eval", str(run), "--k", "20", "--quiet"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["n"] == 30 and result["data"] == str(data.resolve())
    # the held-out ELBO is the last test ELBO of training (same rows, same eps seed)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["elbo"] == pytest.approx(last["test_elbo"], abs=1e-4)
    assert main(["eval", str(run), "--data", str(data), "--k", "20", "--quiet", "-n", "7"]) == 0
    assert json.loads((run / "eval.json").read_text())["n"] == 7
    assert "30 test examples" in capsys.readouterr().out


def test_a_refused_overwrite_keeps_the_old_run(tmp_path, run, data, capsys):
    bad = tmp_path / "range.npy"
    np.save(bad, np.load(data) * 2)  # values in [0, 2]: no Bernoulli data
    before = _files(run)
    err = _error(capsys, ["train", "--data", str(bad), *TINY, "-o", str(run), "--overwrite"])
    assert f"{bad}: values range over [0, 2]" in err
    assert _files(run) == before


def test_overwrite_leaves_nothing_of_the_old_run(tmp_path, data):
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), *TINY, "-o", str(out)]) == 0
    assert main(["eval", str(out), "--k", "5", "--quiet"]) == 0
    assert (out / "manifold.png").exists() and (out / "eval.json").exists()
    flags = ["--epochs", "1", "--hidden", "16", "--latent-dim", "3", "--quiet"]
    assert main(["train", "--data", str(data), *flags, "-o", str(out), "--overwrite"]) == 0
    assert not (out / "manifold.png").exists() and not (out / "eval.json").exists()  # of the 2-D model
    assert json.loads((out / "config.json").read_text())["params"]["latent_dim"] == 3


def test_a_diverging_run_stops_with_a_lower_learning_rate_and_saves_no_nan(tmp_path, data, capsys):
    for lr in ("1e30", "1e6"):  # weights overflow the ELBO / Adam's second moment overflows
        out = tmp_path / lr
        err = _error(capsys, ["train", "--data", str(data), *TINY, "--lr", lr, "-o", str(out)])
        assert "diverged" in err and "lower learning rate" in err
        assert not out.exists()  # nothing to resume: the folder this command made is gone
    x = np.load(data).reshape(300, -1)
    with pytest.raises(VaekitError, match="diverged"):
        VAE(lr=1e6, epochs=2, hidden=(16,), verbose=False).fit(x)


def test_binarizing_needs_values_in_0_1_whatever_the_likelihood(tmp_path, data, capsys):
    bad = tmp_path / "range.npy"
    np.save(bad, np.load(data) * 2)
    flags = ["--likelihood", "gaussian", "--binarize", "dynamic"]
    err = _error(capsys, ["train", "--data", str(bad), *TINY, *flags, "-o", str(tmp_path / "r")])
    assert f"{bad}: values range over [0, 2]" in err and "binarize" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "change", [{"image_shape": [1, 5, 5]}, {"image_shape": [1, 8]}, {"n_features_in": -3}]
)
def test_a_config_whose_shapes_do_not_fit_is_refused(tmp_path, run, capsys, change):
    copy = tmp_path / "run"
    copy.mkdir()
    for name, content in _files(run).items():
        (copy / name).write_bytes(content)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **change}))
    assert "config.json: not a vaekit model config" in _error(capsys, ["sample", str(copy)])


def test_fit_again_on_data_of_another_width_starts_afresh(data):
    x = np.load(data).reshape(300, -1)
    vae = VAE(epochs=1, hidden=(16,), verbose=False).fit(x)
    vae.fit(x[:, :32])
    assert vae.n_features_in_ == 32 and vae.transform(x[:5, :32]).shape == (5, vae.latent_dim)


def test_plots_of_a_conditional_run_use_its_labels(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x, y = (rng.random((200, 8, 8)) > 0.5).astype(np.float32), rng.integers(0, 3, 200)
    path = tmp_path / "lab.npz"
    np.savez(path, x_train=x[:180], x_test=x[180:], y_train=y[:180], y_test=y[180:])
    out = tmp_path / "r"
    assert main(["train", "--data", str(path), "--conditional", *TINY, "-o", str(out)]) == 0
    assert main(["plot", "scatter", str(out)]) == 0 and (out / "scatter.png").stat().st_size > 0
    assert "unconditional runs only" in _error(capsys, ["plot", "interpolate", str(out)])


def test_ctrl_c_while_the_data_load_leaves_no_folder(tmp_path, data, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("vaekit.cli.load_data", interrupted)
    assert main(["train", "--data", str(data), *TINY, "-o", str(tmp_path / "r")]) == 130
    assert not (tmp_path / "r").exists()
    assert "resume" not in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(run, tmp_path):
    """`vaekit sample RUN | true`: exit 141 (128 + SIGPIPE, as shells report), no traceback, PNG kept."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "sample", str(run), "-o", str(tmp_path / "s.png")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before vaekit prints
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err.strip() == "vaekit: stopped: standard output was closed"
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize("command", ["reconstruct", "encode", "eval"])
def test_data_of_another_width_is_named_in_the_error(run, tmp_path, capsys, command):
    out = [] if command == "eval" else ["-o", str(tmp_path / "out")]
    err = _error(capsys, [command, str(run), "--data", "mnist", *out])
    assert "mnist has 784 features, but VAE is expecting 64 features as input" in err


def test_reproduce_on_bad_data_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "nan.npy"
    np.save(bad, np.full((10, 4), np.nan, dtype=np.float32))
    out = tmp_path / "r"
    assert "NaN" in _error(capsys, ["reproduce", "kingma2013", "--data", str(bad), "-o", str(out)])
    assert not out.exists()


def test_curves_of_a_run_without_a_model_yet(tmp_path, run):
    """An interrupted run has metrics.jsonl (and a checkpoint) but no model.safetensors."""
    (tmp_path / "metrics.jsonl").write_bytes((run / "metrics.jsonl").read_bytes())
    assert main(["plot", "curves", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_eval_refuses_a_data_file_changed_since_training(tmp_path, data, capsys):
    """Its held-out split would be another one, holding rows the model trained on."""
    path = tmp_path / "img.npy"
    path.write_bytes(data.read_bytes())
    out = tmp_path / "r"
    assert main(["train", "--data", str(path), *TINY, "-o", str(out)]) == 0
    np.save(path, np.concatenate([np.load(data), np.load(data)[:50]]))
    assert "changed since the run trained on it" in _error(capsys, ["eval", str(out), "--k", "5", "--quiet"])
    assert main(["eval", str(out), "--data", str(data), "--k", "5", "--quiet"]) == 0  # other data: said


def test_scatter_colours_by_class_labels_only_and_needs_two_points(tmp_path, capsys):
    rng = np.random.default_rng(2)
    x, y = (rng.random((120, 16)) > 0.5).astype(np.float32), rng.normal(size=(120, 2))
    path = tmp_path / "vectors.npz"
    np.savez(path, x_train=x[:100], x_test=x[100:], y_train=y[:100], y_test=y[100:])
    out = tmp_path / "r"
    assert main(["train", "--data", str(path), *TINY, "-o", str(out)]) == 0
    assert main(["plot", "scatter", str(out)]) == 0  # 2-D float y: no colour (was a ValueError)
    assert "at least 2 test examples" in _error(capsys, ["plot", "scatter", str(out), "-n", "1"])


def test_a_run_folder_inside_its_image_folder_is_refused(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((8, 8)) * 255).astype(np.uint8)).save(
            images / f"{i}.png"
        )
    err = _error(capsys, ["train", "--data", str(images), *TINY, "-o", str(images / "run")])
    assert "inside the image folder" in err and not (images / "run").exists()


def test_an_absurd_resize_is_refused_while_parsing(tmp_path, capsys):
    assert main(["train", "--resize", "100000x100000", "-o", str(tmp_path / "r")]) == 2
    assert "each from 1 to 4096" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_save_after_set_params_writes_the_fitted_model(tmp_path, data):
    x = np.load(data).reshape(300, -1)
    vae = VAE(latent_dim=3, hidden=(16,), epochs=1, verbose=False).fit(x)
    vae.set_params(hidden=(8,), latent_dim=5)  # for the next fit; the fitted model is unchanged
    vae.save(tmp_path / "m")
    loaded = VAE.load(tmp_path / "m")
    assert loaded.hidden == (16,) and loaded.latent_dim == 3
    np.testing.assert_array_equal(loaded.transform(x), vae.transform(x))


def test_partial_fit_refuses_static_binarization(data):
    with pytest.raises(VaekitError, match="partial_fit cannot binarize='static'"):
        VAE(binarize="static", hidden=(16,)).partial_fit(np.load(data).reshape(300, -1))


def test_a_run_on_rows_that_are_not_images_still_draws_its_curves(tmp_path):
    path = tmp_path / "rows.npy"
    np.save(path, (np.random.default_rng(3).random((100, 7)) > 0.5).astype(np.float32))  # 7: no image
    out = tmp_path / "r"
    assert main(["train", "--data", str(path), *TINY, "-o", str(out)]) == 0
    assert (out / "curves.png").stat().st_size > 0 and not (out / "samples.png").exists()


def test_a_run_folder_being_written_is_refused_to_a_second_command(run, data, capsys):
    from vaekit import storage

    before = _files(run)
    with storage.exclusive(run):  # as a `vaekit train` in another process holds it
        err = _error(capsys, ["train", "--data", str(data), *TINY, "-o", str(run), "--overwrite"])
    assert "another vaekit command is writing this run folder" in err
    assert _files(run) == before


def test_resuming_a_finished_run_without_its_checkpoint_is_refused(tmp_path, run, capsys):
    copy = tmp_path / "run"
    copy.mkdir()
    for name, content in _files(run).items():
        if name != "checkpoint.safetensors":
            (copy / name).write_bytes(content)
    before = _files(copy)
    assert "no checkpoint to resume" in _error(capsys, ["train", "--resume", str(copy), "--quiet"])
    assert _files(copy) == before  # not silently trained again from scratch


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_fitted_model_trains_on_exactly_as_the_original(data, how):
    """A copy must not lose the flat parameter buffer (its views are copied apart otherwise)."""
    import copy
    import pickle

    x = np.load(data).reshape(300, -1)
    vae = VAE(hidden=(16,), epochs=1, verbose=False).fit(x)
    before = vae.transform(x)
    twin = copy.deepcopy(vae) if how == "deepcopy" else pickle.loads(pickle.dumps(vae))
    for model in (vae, twin):
        model.partial_fit(x[:20]).partial_fit(x[20:40])
    np.testing.assert_array_equal(twin.transform(x), vae.transform(x))
    assert not np.array_equal(vae.transform(x), before)  # the steps changed the weights


def test_partial_fit_learns_the_class_count_from_classes_on_the_first_call(data):
    x = np.load(data).reshape(300, -1)
    streamed = VAE(conditional=True, hidden=(16,), verbose=False)
    streamed.partial_fit(x[:4], [0, 1, 0, 1], classes=[0, 1, 2])
    streamed.partial_fit(x[4:8], [0, 1, 2, 2])  # label 2 first seen here
    assert streamed.n_classes_ == 3 and streamed.module_.cond_dim == 3
    with pytest.raises(VaekitError, match="pass classes= on the first call"):
        VAE(conditional=True, hidden=(16,)).partial_fit(x[:4], [0, 1, 0, 1]).partial_fit(x[4:6], [2, 2])
