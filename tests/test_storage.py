"""Files vaekit writes and reads: the permissions a run folder's files get, weights holding NaN or
infinity refused on loading, and the pictures of a model conditioned on vectors."""

import os
import shutil
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vaekit import VAE, VaekitError, plots, runs, storage
from vaekit.cli import main
from vaekit.runs import CHECKPOINT


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under ``mask``, restoring the previous umask after it."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The stderr line of a command that must fail with vaekit's own error and exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error:") and "\n" not in err and "Traceback" not in err
    return err


def _corrupt(path: Path, name: str, values: list[float]) -> None:
    """Overwrite the first values of tensor ``name`` of a safetensors file (keeping its metadata)
    with safetensors itself, which, unlike storage.save_tensors, writes NaN and infinity."""
    tensors, metadata = storage.load_tensors_and_metadata(path)
    tensors[name].view(-1)[: len(values)] = torch.tensor(values)
    save_file(tensors, path, metadata=metadata or None)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, mnist_subset: Path) -> Path:
    """A finished one-epoch `vaekit train` run folder, written under umask 022."""
    out = tmp_path_factory.mktemp("runs") / "r"
    argv = ["train", "--data", str(mnist_subset), "--epochs", "1", "--latent-dim", "2", "--hidden", "16"]
    with umask(0o022):
        assert main([*argv, "--quiet", "-o", str(out)]) == 0
    return out


# ---------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=oct)
def test_every_writer_gives_the_mode_open_would(tmp_path: Path, mask: int, mode: int) -> None:
    """0o666 less the umask, for a new file and for one replacing an older file."""
    picture = plots.image_grid(np.zeros((2, 4)), (1, 2, 2), 2)
    (tmp_path / "old.bin").write_bytes(b"old")
    os.chmod(tmp_path / "old.bin", 0o600)
    with umask(mask):
        storage.atomic_write(tmp_path / "a.bin", b"a")
        storage.atomic_write(tmp_path / "old.bin", b"new")
        storage.write_json(tmp_path / "a.json", {"a": 1})
        storage.write_jsonl(tmp_path / "a.jsonl", [{"a": 1}])
        storage.save_tensors(tmp_path / "a.safetensors", {"a": torch.ones(2)})
        plots.save_png(picture, tmp_path / "a.png")
        plots.training_curves([{"epoch": 1, "train_elbo": -1.0}], tmp_path / "curves.png")
    names = ["a.bin", "old.bin", "a.json", "a.jsonl", "a.safetensors", "a.png", "curves.png"]
    assert sorted(os.listdir(tmp_path)) == sorted(names)  # no temporary file left behind
    assert {name: oct(_mode(tmp_path / name)) for name in names} == {name: oct(mode) for name in names}
    assert (tmp_path / "old.bin").read_bytes() == b"new"


def test_a_run_folder_is_readable_by_others_under_umask_022(
    run: Path, mnist_subset: Path, tmp_path: Path
) -> None:
    files = sorted(p.name for p in run.iterdir())
    assert {"config.json", "model.safetensors", CHECKPOINT, "metrics.jsonl", "samples.png"} <= set(files)
    assert {name: oct(_mode(run / name)) for name in files} == {name: "0o644" for name in files}
    with umask(0o022):
        assert main(["encode", str(run), "--data", str(mnist_subset), "-o", str(tmp_path / "z.npy")]) == 0
    assert _mode(tmp_path / "z.npy") == 0o644


# ---------------------------------------------------------------------------- non-finite weights


@pytest.mark.parametrize("values", [[float("nan")] * 3, [1.0, float("inf"), float("-inf"), float("nan")]])
def test_loading_weights_holding_nan_or_infinity_is_refused(tmp_path: Path, values: list[float]) -> None:
    x = (np.random.default_rng(0).random((200, 16)) < 0.3).astype(np.float32)
    folder = tmp_path / "m"
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1).fit(x)
    vae.save(folder)
    VAE.load(folder)  # intact: loads
    name = sorted(vae.module_.state_dict())[0]
    _corrupt(folder / runs.WEIGHTS, name, values)
    bad = sum(not np.isfinite(v) for v in values)
    with pytest.raises(VaekitError, match=rf"model\.safetensors: tensor {name} holds {bad} NaN or infinite"):
        VAE.load(folder)


def test_cli_refuses_a_run_whose_weights_hold_nan(
    run: Path, mnist_subset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = shutil.copytree(run, tmp_path / "bad")
    _corrupt(bad / runs.WEIGHTS, "decoder.out.bias", [float("nan")])
    message = f"{bad / runs.WEIGHTS}: tensor decoder.out.bias holds 1 NaN or infinite values"
    png = tmp_path / "s.png"
    assert message in _one_line_error(capsys, ["sample", str(bad), "-n", "4", "-o", str(png)])
    argv = ["eval", str(bad), "--data", str(mnist_subset), "--k", "2", "-n", "5", "--quiet"]
    assert message in _one_line_error(capsys, argv)
    assert not png.exists() and not (bad / "eval.json").exists()


def test_a_checkpoint_holding_infinity_is_refused_and_an_intact_one_resumes(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint's own entries (uint8 RNG state, float64 sums, Adam's moments) pass when finite."""
    tensors, _ = storage.load_tensors_and_metadata(run / CHECKPOINT)
    assert tensors["generator"].dtype == torch.uint8 and tensors["epoch.sums"].dtype == torch.float64
    moment = next(k for k in sorted(tensors) if k.startswith("optimizer.") and k.endswith("exp_avg_sq"))
    intact = shutil.copytree(run, tmp_path / "intact")
    assert main(["train", "--resume", str(intact), "--quiet"]) == 0
    capsys.readouterr()
    bad = shutil.copytree(run, tmp_path / "bad")
    _corrupt(bad / CHECKPOINT, moment, [float("inf"), float("inf")])
    err = _one_line_error(capsys, ["train", "--resume", str(bad), "--quiet"])
    assert f"{bad / CHECKPOINT}: tensor {moment} holds 2 NaN or infinite values" in err


# ---------------------------------------------------------------------------- pictures


@pytest.fixture(scope="module")
def vector_model() -> tuple[VAE, np.ndarray, np.ndarray]:
    """A VAE on 8x8 binary images conditioned on float vectors of width 3, with its data."""
    rng = np.random.default_rng(1)
    x = (rng.random((300, 64)) < 0.3).astype(np.float32)
    c = rng.standard_normal((300, 3)).astype(np.float32)
    vae = VAE(conditional=True, latent_dim=2, hidden=(16,), epochs=1).fit(x[:260], c[:260])
    return vae, x[260:], c[260:]


def test_pictures_of_a_vector_conditional_model_draw_a_row_per_test_condition(
    vector_model: tuple[VAE, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    vae, x_test, c_test = vector_model
    assert vae.n_classes_ is None and vae.image_shape_ == (1, 8, 8)
    written = plots.write_pictures(vae, tmp_path, x_test, c_test)
    assert tmp_path / "samples.png" in written and tmp_path / "reconstructions.png" in written
    rows = np.repeat(c_test[:8], 8, axis=0)  # the first 8 test conditions, 8 samples each
    expected = plots.image_grid(vae.sample(64, seed=vae.seed, y=rows), (1, 8, 8), 8)
    drawn = np.asarray(Image.open(tmp_path / "samples.png"))[plots.TITLE_BAND :]  # below the title
    np.testing.assert_array_equal(drawn[:, : expected.width], np.asarray(expected))


def test_sample_grid_of_a_vector_conditional_model_needs_its_vectors(
    vector_model: tuple[VAE, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    vae, _, c_test = vector_model
    picture = plots.sample_grid(vae, 6, 0, None, c_test[:3])  # 3 rows of 2
    expected = plots.image_grid(vae.sample(6, seed=0, y=np.repeat(c_test[:3], 2, axis=0)), (1, 8, 8), 2)
    np.testing.assert_array_equal(np.asarray(picture), np.asarray(expected))
    with pytest.raises(VaekitError, match="conditioned on vectors: pass the condition vectors"):
        plots.sample_grid(vae, 16, 0, None)
    with pytest.raises(VaekitError, match="--label needs a run conditioned on class labels"):
        plots.sample_grid(vae, 16, 0, 3)
    with pytest.raises(VaekitError, match=r"conditions: expected .* got shape \(0, 3\)"):
        plots.sample_grid(vae, 16, 0, None, c_test[:0])
    with pytest.raises(VaekitError, match="conditioned on vectors"):
        plots.write_pictures(vae, tmp_path, np.zeros((4, 64), np.float32))  # no test conditions


def test_scatter_without_labels_draws_one_colour_without_a_warning(tmp_path: Path) -> None:
    z = np.random.default_rng(0).standard_normal((50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No data for colormapping" would fail here
        coords = plots.latent_scatter(z, None, tmp_path / "s.png")
    np.testing.assert_array_equal(coords, z)
    rgb = np.asarray(Image.open(tmp_path / "s.png").convert("RGB")).reshape(-1, 3).astype(int)
    saturated = rgb[(rgb.max(1) - rgb.min(1)) > 60]  # the points, all in matplotlib's first colour
    assert len(saturated) > 0 and (saturated.argmax(1) == 2).all()  # blue (tab:blue), however blended
