"""The command line end to end on a small subset, and its one-line errors for bad input."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from vaekit import VAE
from vaekit.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_subset):
    out = tmp_path_factory.mktemp("runs") / "r"
    code = main(
        [
            "train",
            "--data",
            str(mnist_subset),
            "--epochs",
            "2",
            "--latent-dim",
            "2",
            "--hidden",
            "64",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_run_folder_is_complete_and_readable(run, mnist_subset):
    config = json.loads((run / "config.json").read_text())
    assert config["params"]["latent_dim"] == 2 and config["n_features_in"] == 784
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_elbo", "test_elbo", "test_kl", "test_recon", "seconds"} <= set(rows[0])
    for name, size in [("samples.png", 8), ("reconstructions.png", 8), ("manifold.png", 20)]:
        with Image.open(run / name) as im:
            assert im.width > size * 28
    # the saved model reproduces the run's last test ELBO
    test = np.load(mnist_subset)["x_test"]
    assert VAE.load(run).score(test) == pytest.approx(rows[-1]["test_elbo"], abs=1e-3)


def test_sample_encode_decode_reconstruct(run, tmp_path, mnist_subset):
    assert main(["sample", str(run), "-n", "16", "-o", str(tmp_path / "s.png")]) == 0
    assert main(["encode", str(run), "--data", str(mnist_subset), "-o", str(tmp_path / "z.npy")]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (200, 2)
    np.testing.assert_allclose(z, VAE.load(run).transform(np.load(mnist_subset)["x_test"]), atol=1e-6)
    assert (
        main(["decode", str(run), "--latents", str(tmp_path / "z.npy"), "-o", str(tmp_path / "x.npy")]) == 0
    )
    assert np.load(tmp_path / "x.npy").shape == (200, 784)
    assert main(["reconstruct", str(run), "--data", str(mnist_subset), "-o", str(tmp_path / "r.png")]) == 0
    assert Image.open(tmp_path / "r.png").height > 8 * 28


def test_eval_of_grey_levels_reports_a_cross_entropy_above_the_elbo(run, mnist_subset, capsys):
    assert main(["eval", str(run), "--data", str(mnist_subset), "--k", "200"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["n"] == 200 and result["k"] == 200
    assert result["elbo"] < result["iw_estimate"] < 0  # grey levels under a Bernoulli: no log p(x)
    assert (
        result["measure"] == "cross_entropy" and result["log_px"] is None and result["bits_per_dim"] is None
    )
    assert 0 <= result["active_units"] <= 2 and len(result["kl_per_dim"]) == 2
    assert sum(result["kl_per_dim"]) == pytest.approx(result["kl"], rel=1e-4)
    captured = capsys.readouterr()
    assert "-cross-entropy bound, k=200" in captured.out  # the table
    assert "k=200" in captured.err and "200/200" in captured.err  # the progress bar, completed


def _err(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("vaekit: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys, run):
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((10, 4), np.nan))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 4)))
    big = tmp_path / "big.npy"
    np.save(big, np.full((10, 4), 7.0))
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10))
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    train = ["train", "--quiet", "--epochs", "1", "-o", str(tmp_path / "new"), "--data"]
    assert "no such file" in _err(capsys, [*train, str(tmp_path / "missing.npy")])
    assert "NaN" in _err(capsys, [*train, str(nan)])
    assert "empty" in _err(capsys, [*train, str(empty)])
    assert "[0, 1]" in _err(capsys, [*train, str(big)])
    assert "shape" in _err(capsys, [*train, str(flat)])
    assert str(pickled) in _err(capsys, [*train, str(pickled)])
    assert not (tmp_path / "new").exists()  # the failed runs left no empty run folder behind
    (tmp_path / "mine").mkdir()  # but a folder the user made stays
    assert "NaN" in _err(capsys, ["train", "--quiet", "-o", str(tmp_path / "mine"), "--data", str(nan)])
    assert (tmp_path / "mine").is_dir()
    # an existing run folder is refused and left exactly as it was
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert "--overwrite" in _err(capsys, ["train", "--quiet", "-o", str(run)])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # corrupt or pickled weights are refused
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "config.json").write_text((run / "config.json").read_text())
    (fake / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:100])
    assert "model.safetensors" in _err(capsys, ["sample", str(fake)])
    assert "config.json" in _err(capsys, ["sample", str(tmp_path)])
    assert "z.npy" in _err(capsys, ["decode", str(run), "--latents", str(tmp_path / "z.npy")])
    assert "positive" in _err(capsys, ["eval", str(run), "-n", "0"])
    assert "positive" in _err(capsys, ["eval", str(run), "--k", "0"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert "ro" in _err(capsys, ["train", "--quiet", "-o", str(ro / "run")])
