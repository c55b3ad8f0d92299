"""Users' files: 16-bit image folders, .npz labels and condition vectors, CSV headers and line
numbers, and files that are not what their suffix says. Each problem is one VaekitError line naming
the file (on the command line: "vaekit: error: ..." and exit code 2)."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, VaekitError
from vaekit.cli import main
from vaekit.data import load_file, read_file

RNG = np.random.default_rng(0)


def _error(path: Path, match: str) -> str:
    """The one-line VaekitError that reading path raises; it names the file and matches match."""
    with pytest.raises(VaekitError, match=match) as info:
        read_file(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _save_png(array: np.ndarray, path: Path) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


# ---------------------------------------------------------------------------- image folders


def test_16_bit_pngs_are_scaled_by_65535_not_clipped(tmp_path):
    images = [
        _save_png((RNG.random((8, 8)) * 65535).astype(np.uint16), tmp_path / f"{i}.png") for i in range(10)
    ]
    with Image.open(tmp_path / "0.png") as im:
        assert im.mode in ("I;16", "I")  # Pillow opens them as 16-bit, not 8-bit
    rows, labels, shape = read_file(tmp_path)
    expected = np.stack(images).reshape(10, 64).astype(np.float32) / 65535
    assert shape == (1, 8, 8) and labels is None and rows.dtype == torch.float32
    np.testing.assert_allclose(rows.numpy(), expected, rtol=1e-6)
    assert float((load_file(tmp_path).x_train == 1).float().mean()) < 0.05  # was 0.99: clipped at 255


def test_8_and_16_bit_images_in_one_folder_are_each_scaled_by_their_depth(tmp_path):
    eight = _save_png(np.full((4, 4), 51, np.uint8), tmp_path / "a.png")
    sixteen = _save_png(np.full((4, 4), 13107, np.uint16), tmp_path / "b.png")
    rows, _, shape = read_file(tmp_path)
    assert shape == (1, 4, 4)
    np.testing.assert_allclose(rows.numpy(), np.full((2, 16), 0.2), rtol=1e-6)
    assert np.array_equal(rows[0].numpy(), (eight.astype(np.float32) / 255).ravel())  # 8-bit as before
    assert np.array_equal(rows[1].numpy(), (sixteen.astype(np.float32) / 65535).ravel())


def test_16_bit_grey_with_colour_images_becomes_rgb_at_full_depth(tmp_path):
    _save_png(np.full((4, 4), 1000, np.uint16), tmp_path / "grey.png")
    colour = _save_png(RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8), tmp_path / "rgb.png")
    rows, _, shape = read_file(tmp_path)
    assert shape == (3, 4, 4)
    np.testing.assert_allclose(rows[0].numpy(), np.full(48, 1000 / 65535), rtol=1e-6)  # 3 equal channels
    assert np.array_equal(rows[1].numpy(), (colour.transpose(2, 0, 1).astype(np.float32) / 255).ravel())


def test_resized_16_bit_images_keep_their_depth(tmp_path):
    for i in range(2):
        _save_png(np.full((6, 6), 40000, np.uint16), tmp_path / f"{i}.png")
    rows, _, shape = read_file(tmp_path, resize=(3, 3))
    assert shape == (1, 3, 3)
    np.testing.assert_allclose(rows.numpy(), np.full((2, 9), 40000 / 65535), rtol=1e-5)


def test_32_bit_integer_images_are_read_as_16_bit_and_refused_beyond(tmp_path):
    """Some Pillow versions open 16-bit PNGs as mode I; a TIFF under a .png name shows it here."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder, top in ((good, 65535), (bad, 70000)):
        folder.mkdir()
        for i in range(2):
            Image.fromarray(np.full((4, 4), top, np.int32)).save(folder / f"{i}.png", format="TIFF")
    with Image.open(good / "0.png") as im:
        assert im.mode == "I"
    assert torch.equal(read_file(good)[0], torch.ones(2, 16))
    _error(bad, "outside 0..65535")


def test_float_images_are_refused_naming_the_file(tmp_path):
    _save_png(np.zeros((4, 4), np.uint8), tmp_path / "a.png")
    Image.fromarray(RNG.random((4, 4)).astype(np.float32)).save(tmp_path / "b.png", format="TIFF")
    message = _error(tmp_path, "image mode F")
    assert str(tmp_path / "b.png") in message


def test_image_folder_labels_are_int64(tmp_path):
    for name in ("cat", "dog"):
        for i in range(2):
            _save_png(np.zeros((4, 4), np.uint16), tmp_path / name / f"{i}.png")
    _, labels, _ = read_file(tmp_path)
    assert labels is not None and labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------------------- .npz labels


def _npz(path: Path, **y: np.ndarray) -> Path:
    """An .npz with 18 train and 2 test rows of 4 values, and the given labels."""
    np.savez(path, x_train=RNG.random((18, 4)), x_test=RNG.random((2, 4)), **y)
    return path


def test_npz_condition_vectors_stay_float_and_train_a_vector_conditioned_model(tmp_path):
    y_train, y_test = RNG.random((18, 3)), RNG.random((2, 3))
    data = load_file(_npz(tmp_path / "c.npz", y_train=y_train, y_test=y_test))
    assert data.y_train is not None and data.y_test is not None
    assert data.y_train.dtype == torch.float32 and data.y_train.shape == (18, 3)
    np.testing.assert_allclose(data.y_train.numpy(), y_train, rtol=1e-6)
    np.testing.assert_allclose(data.y_test.numpy(), y_test, rtol=1e-6)
    assert "condition vectors of width 3" in data.describe()
    vae = VAE(conditional=True, likelihood="gaussian", latent_dim=2, hidden=(4,), epochs=1, batch_size=6)
    vae.fit(data.x_train, data.y_train)
    assert vae.module_.cond_dim == 3 and vae.n_classes_ is None


def test_npz_integer_valued_labels_become_int64(tmp_path):
    data = load_file(_npz(tmp_path / "l.npz", y_train=np.arange(18) % 3 * 1.0, y_test=np.array([0, 2])))
    assert data.y_train is not None and data.y_test is not None
    assert data.y_train.dtype == data.y_test.dtype == torch.int64
    assert data.y_train.tolist() == [i % 3 for i in range(18)] and "3 classes" in data.describe()


BAD_LABELS = {
    "fractional": (
        {"y_train": np.full(18, 0.5), "y_test": np.zeros(2)},
        r"\[y_train\]: class labels must be",
    ),
    "negative": ({"y_train": np.full(18, -1), "y_test": np.zeros(2)}, r"\[y_train\]: class labels must be"),
    "nan": ({"y_train": np.full(18, np.nan), "y_test": np.zeros(2)}, r"\[y_train\]: contains NaN"),
    "nan vectors": (
        {"y_train": np.zeros((18, 2)), "y_test": np.full((2, 2), np.inf)},
        r"\[y_test\]: contains NaN",
    ),
    "too long": (
        {"y_train": np.zeros(19), "y_test": np.zeros(2)},
        r"\[y_train\]: has 19 rows for 18 examples",
    ),
    "too short": (
        {"y_train": np.zeros((18, 2)), "y_test": np.zeros((1, 2))},
        r"\[y_test\]: has 1 rows for 2",
    ),
    "3-D": ({"y_train": np.zeros((18, 2, 2)), "y_test": np.zeros(2)}, r"\[y_train\]: has shape \(18, 2, 2\)"),
    "strings": ({"y_train": np.array(["a"] * 18), "y_test": np.zeros(2)}, r"\[y_train\]: holds <U1 values"),
    "no y_test": ({"y_train": np.zeros(18)}, "has y_train but no y_test"),
    "no y_train": ({"y_test": np.zeros(2)}, "has y_test but no y_train"),
    "mixed kinds": ({"y_train": np.zeros(18), "y_test": np.zeros((2, 3))}, "both must be labels"),
    "two widths": ({"y_train": np.zeros((18, 2)), "y_test": np.zeros((2, 3))}, "both must be labels"),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_bad_npz_labels_are_refused_without_warnings(tmp_path, case):
    y, match = BAD_LABELS[case]
    path = _npz(tmp_path / "bad.npz", **y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN labels used to warn "invalid value encountered in cast"
        _error(path, match)


# ---------------------------------------------------------------------------- CSV files


def _csv(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding=encoding)
    return path


GOOD_CSV = {
    "plain": "1,2,3\n4,5,6\n",
    "header": "a,b,c\n1,2,3\n4,5,6\n",
    "pixel header": "pixel0,pixel1,pixel2\n1,2,3\n4,5,6\n",
    "header with an unnamed column": ",b,c\n1,2,3\n4,5,6\n",
    "blank lines and comments": "# saved by np.savetxt\n1,2,3\n\n4,5,6\n",
    "windows line ends, spaces": "1, 2, 3\r\n4 ,5 ,6\r\n",
}


@pytest.mark.parametrize("case", GOOD_CSV)
def test_good_csv_files_keep_every_row(tmp_path, case):
    rows, _, shape = read_file(_csv(tmp_path, GOOD_CSV[case]))
    assert shape is None and rows.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_a_byte_order_mark_is_not_data(tmp_path):
    rows, _, _ = read_file(_csv(tmp_path, "1,2,3\n4,5,6\n", encoding="utf-8-sig"))
    assert rows.tolist() == [[1, 2, 3], [4, 5, 6]]  # the first row used to be dropped as a "header"


BAD_CSV = {
    "a number in the first line": ("0,1,x\n" + "1,2,3\n" * 9, r"line 1, column 3: 'x' is not a number"),
    "a longer second row": ("1,2,3\n" + "1,2,3,4\n" * 4, "line 2 has 4 cells, line 1 has 3"),
    "a word on line 2": ("1,2,3\nx,5,6\n", "line 2, column 1: 'x' is not a number"),
    "after a header": ("a,b\n1,2\n3,oops\n", "line 3, column 2: 'oops' is not a number"),
    "after blank lines": ("1,2\n\n\n3,\n", "line 4, column 2: empty cell"),
    "an empty cell": ("1,,3\n", "line 1, column 2: empty cell"),
    "underscores": ("1,2\n1_000,3\n", "line 2, column 1: '1_000' is not a number"),
    "semicolons": ("1;2;3\n4;5;6\n", "line 1, column 1: '1;2;3' is not a number; .*comma-separated"),
    "semicolons after a header": ("a;b\n1;2\n", "line 1, column 1: 'a;b' is not a number; .*comma-separated"),
    "nothing": ("", r"is empty: 0 sample\(s\) \(shape"),
    "only a header": ("a,b,c\n", r"is empty: 0 sample\(s\) \(shape"),
}


@pytest.mark.parametrize("case", BAD_CSV)
def test_bad_csv_files_name_the_line_and_the_problem(tmp_path, case):
    text, match = BAD_CSV[case]
    _error(_csv(tmp_path, text), match)


def test_bad_csv_line_with_a_byte_order_mark(tmp_path):
    _error(_csv(tmp_path, "1,2\n3,4\nx,6\n", encoding="utf-8-sig"), "line 3, column 1: 'x'")


# ---------------------------------------------------------------------------- misnamed files


@pytest.mark.parametrize(
    ("suffix", "match"), [(".npy", r"not a valid \.npy file"), (".npz", r"not a valid \.npz file")]
)
def test_text_renamed_to_npy_or_npz_is_not_called_pickled(tmp_path, suffix, match):
    path = tmp_path / f"data{suffix}"
    path.write_text("1,2,3\n4,5,6\n")
    assert "pickle" not in _error(path, match)


def test_an_npy_file_renamed_to_npz_is_refused(tmp_path):
    path = tmp_path / "data.npz"
    np.save(tmp_path / "data.npy", np.zeros((3, 2)))
    (tmp_path / "data.npy").rename(path)
    _error(path, r"not a valid \.npz file")


# ---------------------------------------------------------------------------- on the command line


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("data.csv", b"0,1,x\n1,2,3\n", "line 1, column 3: 'x' is not a number"),
        ("data.npy", b"not numpy\n", r"not a valid \.npy file"),
    ],
)
def test_cli_reports_bad_files_in_one_line(tmp_path, capsys, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["train", "--quiet", "--epochs", "1", "-o", str(tmp_path / "run"), "--data", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vaekit: error: {path}: ") and "\n" not in err
    assert re.search(match, err)
    assert not (tmp_path / "run").exists()
