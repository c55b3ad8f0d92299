"""Class names of an image folder: hidden folders are not classes, and the run knows its labels by
name (vaekit sample --label NAME, the scatter legend, the explorer)."""

import json

import numpy as np
import pytest
from PIL import Image

from vaekit import VAE, VaekitError, runs
from vaekit.cli import main
from vaekit.conditions import label_index
from vaekit.data import class_names, load_data
from vaekit.explore import Explorer


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist):
    """MNIST zeros in bag/, ones in shoe/, and a stray notebook checkpoint image in .ipynb_checkpoints/."""
    root = tmp_path_factory.mktemp("images")
    for name, digit in (("bag", 0), ("shoe", 1)):
        (root / name).mkdir()
        rows = mnist.x_train[mnist.y_train == digit][:60].numpy().reshape(-1, 28, 28)
        for i, row in enumerate(rows):
            Image.fromarray((row * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    (root / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / ".ipynb_checkpoints" / "x-checkpoint.png")
    return root


def test_hidden_folders_are_not_classes_and_names_are_kept(folder):
    data = load_data(folder)
    assert class_names(folder) == data.classes == ("bag", "shoe")
    assert len(data.x_train) + len(data.x_test) == 120  # the hidden image is not read
    assert set(data.y_train.tolist()) == {0, 1} and "2 classes (bag, shoe)" in data.describe()


def test_label_index_takes_a_name_or_a_number():
    assert label_index("shoe", ["bag", "shoe"], 2) == 1 and label_index("0", ["bag", "shoe"], 2) == 0
    with pytest.raises(VaekitError, match=r"one of \['bag', 'shoe'\] or a number"):
        label_index("hat", ["bag", "shoe"], 2)
    with pytest.raises(VaekitError, match=r"classes 0\.\.1"):
        label_index(5, ["bag", "shoe"], 2)


def test_a_conditional_run_samples_and_plots_by_class_name(folder, tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--conditional", "--epochs", "2", "--hidden", "32", "--batch-size", "20", "--quiet"]
    assert main(["train", "--data", str(folder), *flags, "-o", str(run)]) == 0
    assert json.loads((run / runs.CONFIG).read_text())["source"]["classes"] == ["bag", "shoe"]
    vae = VAE.load(run)
    for name, k in (("bag", 0), ("shoe", 1)):
        out = tmp_path / f"{name}.png"
        assert main(["sample", str(run), "--label", name, "-n", "8", "-o", str(out)]) == 0
        by_number = tmp_path / f"{k}.png"
        assert main(["sample", str(run), "--label", str(k), "-n", "8", "-o", str(by_number)]) == 0
        assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(by_number)))
    capsys.readouterr()
    assert main(["sample", str(run), "--label", "hat", "-o", str(tmp_path / "x.png")]) == 2
    assert "one of ['bag', 'shoe']" in capsys.readouterr().err
    assert Explorer.from_run(run).facts["classes"] == ["bag", "shoe"]
    assert vae.n_classes_ == 2


def test_the_scatter_legend_has_one_entry_per_class_named(tmp_path, monkeypatch):
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    from vaekit import plots

    z = np.random.default_rng(0).normal(size=(60, 3))
    plots.latent_scatter(z, np.repeat([0, 1, 2], 20), tmp_path / "s.png", names=["bag", "shoe", "hat"])
    (legend,) = [ax.get_legend() for ax in saved[0].axes if ax.get_legend()]
    assert [t.get_text() for t in legend.get_texts()] == ["bag", "shoe", "hat"]
    plots.latent_scatter(z, np.repeat([0, 1, 2], 20), tmp_path / "t.png")
    assert [t.get_text() for t in saved[1].axes[0].get_legend().get_texts()] == ["0", "1", "2"]
