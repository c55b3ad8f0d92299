"""CSV files with a column of class labels (vaekit train --label-column)."""

import json

import numpy as np
import pytest

from vaekit import VAE
from vaekit.cli import main
from vaekit.data import load_file
from vaekit.errors import VaekitError
from vaekit.runs import CONFIG, EVAL


@pytest.fixture
def labelled_csv(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=120)
    x = rng.normal(size=(120, 3)) + y[:, None] * 2.0
    path = tmp_path / "labelled.csv"
    rows = np.column_stack([x[:, :2], y, x[:, 2]])  # the label column in the middle
    np.savetxt(path, rows, delimiter=",", header="a,b,label,c", comments="", fmt="%.6g")
    return path, x.astype(np.float32), y


def test_the_label_column_is_read_as_labels_and_not_as_a_feature(labelled_csv):
    path, x, y = labelled_csv
    data = load_file(path, seed=0, label_column="label")
    assert data.x_train.shape[1] == 3 and data.y_train.dtype.is_floating_point is False
    rows = np.concatenate([data.x_train.numpy(), data.x_test.numpy()])
    labels = np.concatenate([data.y_train.numpy(), data.y_test.numpy()])
    order = np.lexsort(rows.T)
    np.testing.assert_allclose(rows[order], x[np.lexsort(x.T)], rtol=1e-5)
    np.testing.assert_array_equal(labels[order], y[np.lexsort(x.T)])
    assert load_file(path, seed=0).x_train.shape[1] == 4  # without the flag it is one more column


def test_a_csv_with_a_label_column_trains_a_conditional_model(labelled_csv, tmp_path, capsys):
    path, _, _ = labelled_csv
    run = tmp_path / "run"
    flags = ["--likelihood", "gaussian", "--conditional", "--label-column", "label", "--hidden", "16"]
    assert main(["train", "--data", str(path), *flags, "--epochs", "1", "--quiet", "-o", str(run)]) == 0
    assert "3 classes" in capsys.readouterr().out
    vae = VAE.load(run)
    assert (vae.n_features_in_, vae.module_.cond_dim, vae.n_classes_) == (3, 3, 3)
    assert json.loads((run / CONFIG).read_text())["source"]["label_column"] == "label"
    assert main(["eval", str(run), "--k", "5", "--quiet"]) == 0  # eval reads the labels the same way
    assert np.isfinite(json.loads((run / EVAL).read_text())["log_px"])


def test_a_missing_label_column_or_a_label_column_of_a_non_csv_file_is_refused(labelled_csv, tmp_path):
    path, x, _ = labelled_csv
    with pytest.raises(
        VaekitError, match=r"no column named 'target' to take the labels from \(its header names"
    ):
        load_file(path, label_column="target")
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(VaekitError, match=r"a label column is a column of a \.csv file"):
        load_file(tmp_path / "x.npy", label_column="label")
    (tmp_path / "bad.csv").write_text("a,label\n1,0.5\n2,1\n")
    with pytest.raises(VaekitError, match="class labels must be non-negative integers"):
        load_file(tmp_path / "bad.csv", label_column="label")
