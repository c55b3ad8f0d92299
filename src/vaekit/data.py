"""Data: the packaged MNIST, Fashion-MNIST, and users' own arrays, CSV files and image folders.

Everything is returned as float32 tensors of shape ``(n, d)`` held in memory
(training slices them per batch), with images flattened in (C, H, W) order and
8-bit values scaled to [0, 1]. Every problem with a file raises
:class:`~vaekit.errors.VaekitError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vaekit.errors import VaekitError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

#: SHA-256 of the uncompressed IDX files (gzip wrappers differ between sources).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TEST_FRACTION = 0.1  # held out as the test split of a user's file that has none


@dataclass
class Data:
    """A data set with train and test splits.

    x_train, x_test : (n, d) float32 tensors; images flattened in (C, H, W) order
    y_train, y_test : (n,) int64 labels, or None
    image_shape     : (C, H, W) when the rows are images, else None
    source          : where it was read from
    """

    x_train: Tensor
    x_test: Tensor
    y_train: Tensor | None
    y_test: Tensor | None
    image_shape: tuple[int, int, int] | None
    source: str

    def describe(self) -> str:
        """One line: sizes, shape and value range, for the user to check before training."""
        shape = "x".join(map(str, self.image_shape or (self.x_train.shape[1],)))
        lo, hi = float(self.x_train.min()), float(self.x_train.max())
        labels = f", {int(self.y_train.max()) + 1} classes" if self.y_train is not None else ""
        return (
            f"{self.source}: {len(self.x_train)} train / {len(self.x_test)} test examples "
            f"of shape {shape}, values in [{lo:.3g}, {hi:.3g}]{labels}"
        )


# ---------------------------------------------------------------------------- IDX files


def read_idx(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read a gzip-compressed IDX file, checking the SHA-256 of its uncompressed bytes."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise VaekitError(f"{path}: no such file") from e
    except (OSError, EOFError, zlib.error) as e:
        raise VaekitError(f"{path}: not a readable gzip file ({e})") from e
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise VaekitError(f"{path}: checksum mismatch (the file is corrupt or not the expected one)")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise VaekitError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise VaekitError(f"{path}: holds {body.size} bytes of data, its header says {tuple(dims)}")
    return body.reshape(tuple(dims))


def _idx_data(folder: Path, name: str, source: str) -> Data:
    arrays = {key: read_idx(folder / f"{stem}.gz", SHA256[name][stem]) for key, stem in IDX_FILES.items()}
    return Data(
        x_train=float_rows(arrays["x_train"][:, None]),
        x_test=float_rows(arrays["x_test"][:, None]),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        image_shape=(1, 28, 28),
        source=source,
    )


def load_mnist() -> Data:
    """MNIST as shipped inside the package (60,000 train and 10,000 test digits, 28x28)."""
    folder = importlib.resources.files("vaekit") / "datasets" / "mnist"
    with importlib.resources.as_file(folder) as path:
        return _idx_data(Path(path), "mnist", "mnist")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaekit"


def download_idx(url: str, folder: Path, name: str) -> Path:
    """Download the four IDX files of ``name`` from ``url`` into ``folder``, checking each.

    Files already there with the right checksum are kept; each new file is
    written to a temporary name and renamed only once its checksum is right.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stem, digest in SHA256[name].items():
        target = folder / f"{stem}.gz"
        if target.exists():
            continue
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as tmp:
            try:
                with urllib.request.urlopen(url.rstrip("/") + f"/{stem}.gz", timeout=30) as r:
                    shutil.copyfileobj(r, tmp)
                tmp.close()
                read_idx(Path(tmp.name), digest)
                os.replace(tmp.name, target)
            finally:
                Path(tmp.name).unlink(missing_ok=True)
    return folder


def load_fashion_mnist(url: str = FASHION_MNIST_URL) -> Data:
    """Fashion-MNIST from ``$VAEKIT_DATA/fashion-mnist``, Debian's package, or a checked download."""
    places = []
    if "VAEKIT_DATA" in os.environ:
        places.append(Path(os.environ["VAEKIT_DATA"]) / "fashion-mnist")
    places += [DEBIAN_FASHION_MNIST, _cache_dir() / "fashion-mnist"]
    for folder in places:
        if all((folder / f"{stem}.gz").exists() for stem in IDX_FILES.values()):
            return _idx_data(folder, "fashion-mnist", f"fashion-mnist ({folder})")
    try:
        folder = download_idx(url, places[-1], "fashion-mnist")
    except (OSError, VaekitError) as e:
        raise VaekitError(
            f"fashion-mnist not found in {', '.join(map(str, places[:-1]))} "
            f"and the download from {url} to {places[-1]} failed ({e}); "
            "install Debian's dataset-fashion-mnist or set VAEKIT_DATA"
        ) from e
    return _idx_data(folder, "fashion-mnist", f"fashion-mnist ({folder})")


# ---------------------------------------------------------------------------- users' files


def float_rows(x: np.ndarray, where: str = "data") -> Tensor:
    """(n, C, H, W) uint8 or float images -> (n, C*H*W) float32, 8-bit values scaled to [0, 1].

    Values that are NaN, infinite, or too large for float32 are refused (checked after the cast).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        rows = x.reshape(len(x), -1).astype(np.float32)  # a writable copy
    bad = int(np.count_nonzero(~np.isfinite(rows)))
    if bad:
        raise VaekitError(f"{where}: contains {bad} NaN or infinite values (or values beyond float32)")
    if x.dtype == np.uint8:
        rows /= 255.0
    return torch.from_numpy(rows)


def check_array(x: np.ndarray, where: str) -> None:
    """Reject arrays that cannot be training data: not real numbers, empty, wrong rank."""
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise VaekitError(f"{where}: holds {x.dtype} values, expected numbers (integer, float or bool)")
    if x.ndim < 2 or x.ndim > 4:
        raise VaekitError(f"{where}: has shape {x.shape}; expected (N, D), (N, H, W) or (N, H, W, C)")
    if x.size == 0:
        raise VaekitError(f"{where}: is empty (shape {x.shape})")


def as_rows(x: np.ndarray, where: str) -> tuple[Tensor, tuple[int, int, int] | None]:
    """An (N, D), (N, H, W) or (N, H, W, C) array as (N, d) float32 rows and its image shape."""
    check_array(x, where)
    if x.dtype == bool:
        x = x.astype(np.float32)
    if x.ndim == 2:
        return float_rows(x, where), None
    if x.ndim == 3:
        x = x[:, None]
    else:
        if x.shape[-1] not in (1, 3, 4):
            raise VaekitError(f"{where}: a 4-D array needs 1, 3 or 4 channels last, got {x.shape}")
        x = x.transpose(0, 3, 1, 2)
    return float_rows(x, where), tuple(x.shape[1:])  # type: ignore[return-value]


def _read_csv(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty file is reported as empty below, not warned about
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError:
            pass  # perhaps a header row
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64, skiprows=1)
        except ValueError as e:
            raise VaekitError(f"{path}: not a CSV file of numbers ({e})") from e


def _read_image_folder(folder: Path, resize: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """All PNG/JPEG files below ``folder``; sub-folder names become labels when there are several."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VaekitError(f"{folder}: holds no .png or .jpg images")
    images: list[Image.Image] = []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                images.append(im)
        except (OSError, UnidentifiedImageError) as e:
            raise VaekitError(f"{p}: not a readable image ({e})") from e
    mode = "L" if all(im.mode in ("L", "1", "I;16") for im in images) else "RGB"
    if resize is not None:
        images = [im.resize((resize[1], resize[0]), Image.Resampling.BILINEAR) for im in images]
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise VaekitError(
            f"{folder}: images have {len(sizes)} different sizes {sorted(sizes)[:3]}...; "
            "pass --resize HxW to resize them"
        )
    x = np.stack([np.asarray(im.convert(mode)) for im in images])
    classes = sorted({p.parent for p in files})
    y = np.array([classes.index(p.parent) for p in files]) if len(classes) > 1 else None
    return x, y


def _split(
    x: Tensor, y: Tensor | None, seed: int, where: str | Path
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Hold out TEST_FRACTION of the rows (at least one) as a seeded test split."""
    if len(x) < 2:
        raise VaekitError(f"{where}: need at least 2 examples to hold out a test split, got {len(x)}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(TEST_FRACTION * len(x)))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], x[test], (y[train] if y is not None else None), (y[test] if y is not None else None)


def read_file(
    path: str | Path, resize: tuple[int, int] | None = None
) -> tuple[Tensor, Tensor | None, tuple[int, int, int] | None] | Data:
    """Every row of a user's ``.npy``, ``.npz``, ``.csv`` file or image folder.

    Returns ``(rows (n, d), labels (n,) or None, image shape or None)``, or a
    :class:`Data` when an ``.npz`` file holds its own ``x_train``/``x_test`` splits.
    """
    path = Path(path)
    if not path.exists():
        raise VaekitError(f"{path}: no such file or folder")
    y: np.ndarray | None = None
    try:
        if path.is_dir():
            x, y = _read_image_folder(path, resize)
        elif path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x_train" in z and "x_test" in z:
                    return _npz_with_splits(path, dict(z))
                if len(z.files) != 1:
                    raise VaekitError(
                        f"{path}: holds arrays {z.files}; expected one array, or x_train and x_test"
                    )
                x = z[z.files[0]]
        elif path.suffix == ".csv":
            x = _read_csv(path)
        else:
            raise VaekitError(f"{path}: unknown file type; use .npy, .npz, .csv or a folder of images")
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise VaekitError(f"{path}: cannot be read ({e})") from e
    rows, shape = as_rows(x, str(path))
    return rows, (torch.from_numpy(y.astype(np.int64)) if y is not None else None), shape


def load_file(path: str | Path, resize: tuple[int, int] | None = None, seed: int = 0) -> Data:
    """A user's data with train and test splits.

    An ``.npz`` with ``x_train`` and ``x_test`` (and optionally ``y_train``,
    ``y_test``) keeps its splits; any other file has 10% of its rows held out
    (seeded) as the test split. See :func:`read_file` for the formats.
    """
    found = read_file(path, resize)
    if isinstance(found, Data):
        return found
    rows, labels, shape = found
    x_train, x_test, y_train, y_test = _split(rows, labels, seed, path)
    return Data(x_train, x_test, y_train, y_test, shape, str(path))


def _npz_with_splits(path: Path, arrays: dict[str, np.ndarray]) -> Data:
    x_train, shape = as_rows(arrays["x_train"], f"{path}[x_train]")
    x_test, shape_test = as_rows(arrays["x_test"], f"{path}[x_test]")
    if x_train.shape[1] != x_test.shape[1] or shape != shape_test:
        raise VaekitError(f"{path}: x_train and x_test rows differ in shape")
    labels = {
        k: torch.from_numpy(arrays[k].astype(np.int64)) if k in arrays else None
        for k in ("y_train", "y_test")
    }
    return Data(x_train, x_test, labels["y_train"], labels["y_test"], shape, str(path))


DATASETS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


def load_data(spec: str | Path, resize: tuple[int, int] | None = None, seed: int = 0) -> Data:
    """A named data set (``mnist``, ``fashion-mnist``) or a path to a user's file or folder."""
    if str(spec) in DATASETS:
        return DATASETS[str(spec)]()
    return load_file(spec, resize=resize, seed=seed)


def load_rows(
    spec: str | Path, resize: tuple[int, int] | None = None
) -> tuple[Tensor, Tensor | None, tuple[int, int, int] | None]:
    """Rows to encode or reconstruct: a named data set's test split, or every row of a file."""
    found = DATASETS[str(spec)]() if str(spec) in DATASETS else read_file(spec, resize)
    if isinstance(found, Data):
        return found.x_test, found.y_test, found.image_shape
    return found


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One Bernoulli draw per pixel with P(1) = x, for x in [0, 1]."""
    return torch.bernoulli(x, generator=generator)
