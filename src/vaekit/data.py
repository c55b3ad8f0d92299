"""Data: the packaged MNIST, Fashion-MNIST, and users' own arrays, CSV files and image folders.

Everything is returned as float32 tensors of shape ``(n, d)`` held in memory
(training slices them per batch), with images flattened in (C, H, W) order and
8-bit (16-bit) pixel values scaled to [0, 1] by 255 (65535). Every problem with a file raises
:class:`~vaekit.errors.VaekitError` naming the file. Only regular files are read, and their sizes
are held to :mod:`vaekit.limits` from their headers (.npy, .npz members, image sizes) or a count
of their cells (CSV) before their data are.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import io
import math
import os
import re
import secrets
import shutil
import stat
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageMode, UnidentifiedImageError
from torch import Tensor

from vaekit import byterows, cifar, conditions, imagecache, limits, storage
from vaekit.byterows import ByteRows
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
#: Pillow's modes of 16-bit grey images; "I" (32-bit integers) is how some Pillow versions open 16-bit PNGs.
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
#: The bytes an .npy file and an .npz file (a zip archive, perhaps empty) start with.
SIGNATURES = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}
BYTE_LEVELS = 256  # values of an 8-bit pixel
TEST_FRACTION = 0.1  # held out as the test split of a user's file that has none


@dataclass
class Data:
    """A data set with train and test splits.

    x_train, x_test : (n, d) float32 tensors, or :class:`~vaekit.byterows.ByteRows` (8-bit values
                      kept as bytes, perhaps on disk, turned into float32 a minibatch at a
                      time); images flattened in (C, H, W) order
    y_train, y_test : (n,) int64 class labels, (n, c) float32 condition vectors, or None
    image_shape     : (C, H, W) when the rows are images, else None
    source          : where it was read from
    levels          : values each dimension was stored with: 256 for 8-bit values scaled by 255
                      (IDX files, uint8 arrays), None when not known (floats, resized images)
    """

    x_train: Tensor | ByteRows
    x_test: Tensor | ByteRows
    y_train: Tensor | None
    y_test: Tensor | None
    image_shape: tuple[int, int, int] | None
    source: str
    levels: int | None = None
    classes: tuple[str, ...] | None = None  # the name of each class label (an image folder's sub-folders)

    def describe(self) -> str:
        """One line: sizes, shape and value range, for the user to check before training."""
        shape = "x".join(map(str, self.image_shape or (self.x_train.shape[1],)))
        x = self.x_train
        lo, hi = x.value_range() if isinstance(x, ByteRows) else (float(x.min()), float(x.max()))
        if self.y_train is None:
            labels = ""
        elif self.y_train.ndim == 2:
            labels = f", condition vectors of width {self.y_train.shape[1]}"
        else:
            named = (
                f" ({', '.join(self.classes[:10])}{', ...' * (len(self.classes) > 10)})"
                if self.classes
                else ""
            )
            labels = f", {int(self.y_train.max()) + 1} classes{named}"
        return (
            f"{self.source}: {len(self.x_train)} train / {len(self.x_test)} test examples "
            f"of shape {shape}, values in [{lo:.3g}, {hi:.3g}]{labels}"
        )


# ---------------------------------------------------------------------------- IDX files


def read_idx(path: Path, sha256: str | None = None) -> np.ndarray:
    """Read a gzip-compressed IDX file, checking the SHA-256 of its uncompressed bytes."""
    try:
        with storage.open_regular(path) as file, gzip.open(file, "rb") as f:
            raw = f.read(limits.MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise VaekitError(f"{path}: not a readable gzip file ({e})") from e
    if len(raw) > limits.MAX_IDX_BYTES:
        raise VaekitError(
            f"{path}: decompresses to more than {limits.MAX_IDX_BYTES:,} bytes, no IDX file vaekit reads"
        )
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
        levels=BYTE_LEVELS,
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
        part = folder / f".{stem}.gz.{secrets.token_hex(8)}.part"  # open(): the umask's mode, not 0600
        try:
            with (
                open(part, "xb") as tmp,
                urllib.request.urlopen(url.rstrip("/") + f"/{stem}.gz", timeout=30) as r,
            ):
                shutil.copyfileobj(r, tmp)
            read_idx(part, digest)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
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
        hint = " (Reshape your data: one example of D features is (1, D))" if x.ndim == 1 else ""
        raise VaekitError(f"{where}: has shape {x.shape}; expected (N, D), (N, H, W) or (N, H, W, C){hint}")
    if x.size == 0:  # in scikit-learn's words
        kind = "sample" if len(x) == 0 else "feature"
        raise VaekitError(
            f"{where}: is empty: 0 {kind}(s) (shape={x.shape}) while a minimum of 1 is required."
        )


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


def _csv_text(line: str) -> str:
    """A line as ``np.loadtxt`` sees it: without its newline and # comment ("" for a line it skips)."""
    return line.rstrip("\r\n").partition("#")[0]


def _is_number(cell: str) -> bool:
    """Whether ``np.loadtxt`` reads the cell as a number (float() also takes 1_0 and non-ASCII digits)."""
    try:
        float(cell)
    except ValueError:
        return False
    return cell.isascii() and "_" not in cell


def _is_header(line: str) -> bool:
    """Whether a CSV file's first line is a header: it has a name in it and none of its cells is a number.

    A line with a semicolon is not, so that a semicolon-separated file is refused at its first line.
    """
    text = _csv_text(line)
    cells = text.split(",")
    return ";" not in text and any(c.strip() for c in cells) and not any(map(_is_number, cells))


def _cell_problem(cell: str) -> str | None:
    """What is wrong with one CSV cell, or None when it is a number."""
    if not cell.strip():
        return "empty cell"
    if _is_number(cell):
        return None
    hint = "; vaekit reads comma-separated values, not semicolon-separated" if ";" in cell else ""
    return f"{cell.strip()!r} is not a number{hint}"


def _csv_problem(path: Path, header: bool) -> str | None:
    """Why ``np.loadtxt`` cannot read a CSV file, at its first bad line (1-based, counting every line)."""
    first: tuple[int, int] | None = None  # the first row's line number and number of cells
    with path.open(encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            text = _csv_text(line)
            if not text or (header and line_number == 1):
                continue
            width = text.count(",") + 1
            first = first or (line_number, width)
            if width != first[1]:
                return f"line {line_number} has {width} cells, line {first[0]} has {first[1]}"
            for column, cell in enumerate(text.split(","), start=1):
                problem = _cell_problem(cell)
                if problem:
                    return f"line {line_number}, column {column}: {problem}"
    return None


def _read_csv(path: Path, label_column: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A UTF-8 file of comma-separated numbers (an optional byte order mark) as an (n, d) float64
    array, and the (n,) class labels of the header's column ``label_column`` (else None), which is
    then not among the d features.

    The first line is a header, and skipped, when none of its cells is a number. Blank lines and
    ``#`` comments are skipped. Anything else unreadable is an error naming its line in the file.
    """
    with storage.open_regular(path) as raw:
        cells = _most_cells(raw)  # loadtxt holds them as float64
        limits.check_data(path, cells, 8 * cells, "may hold up to")
        f = io.TextIOWrapper(raw, encoding="utf-8-sig")
        first = f.readline()
        header = _is_header(first)
        f.seek(0)
        try:
            with warnings.catch_warnings():  # an empty file is reported as empty by check_array
                warnings.simplefilter("ignore")
                x = np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64, skiprows=int(header))
        except ValueError as e:
            problem = _csv_problem(path, header) or f"not a CSV file of numbers ({e})"
            raise VaekitError(f"{path}: {problem}") from e
    if label_column is None:
        return x, None
    names = [cell.strip() for cell in _csv_text(first).split(",")] if header else []
    if label_column not in names:
        found = f"its header names {names[:8]}{'...' * (len(names) > 8)}" if header else "it has no header"
        raise VaekitError(f"{path}: no column named {label_column!r} to take the labels from ({found})")
    j = names.index(label_column)
    if x.shape[1] < 2:
        raise VaekitError(f"{path}: column {label_column!r} holds the labels, leaving no feature column")
    labels = conditions.class_labels(x[:, j], f"{path}, column {label_column!r}")
    return np.delete(x, j, axis=1), labels


def _most_cells(f: io.BufferedIOBase) -> int:
    """An upper bound on the cells of a CSV file (commas and line ends, plus one), read in blocks
    of 1 MiB, so that the file's size in numbers is known before it is parsed. Rewinds ``f``."""
    cells = 1
    for block in iter(lambda: f.read(2**20), b""):
        cells += block.count(b",") + block.count(b"\n")
    f.seek(0)
    return cells


def _open_image(path: Path, draft: Callable[[int, int], tuple[int, int] | None] | None = None) -> Image.Image:
    """The image in a file, with 16-bit grey turned into mode F holding values in [0, 1].

    draft : (W, H) -> the smallest (W, H) a JPEG of that size may be decoded at (``Image.draft``:
        a scale of 1/2, 1/4 or 1/8 chosen by the decoder, keeping at least that size), or None

    (Pillow clips 16-bit modes to 8 bits when converting them, and some of them when resizing.)
    Images of other than 8 or 16 bits per value (mode F, or I beyond 16 bits) are refused: the
    value that stands for white is unknown.
    """
    try:
        # Pillow warns of a "decompression bomb" above 89 million pixels: vaekit's own lower limit
        # refuses those, from the header, before any pixel is decoded
        with storage.open_regular(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                limits.check_image(path, im.height, im.width)
                reduced = draft(im.width, im.height) if draft is not None and im.format == "JPEG" else None
                if reduced is not None:
                    im.draft(im.mode, reduced)
                im.load()
    except Image.DecompressionBombError as e:  # over twice Pillow's limit: refused by Image.open itself
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise VaekitError(
            limits.image_too_large(
                path, f"{int(pixels[1]):,} pixels" if pixels else "more pixels than Pillow opens"
            )
        ) from e
    except (OSError, UnidentifiedImageError, ValueError) as e:  # ValueError: a text chunk too large
        raise VaekitError(f"{path}: not a readable image ({e})") from e
    if im.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(im)
        if values.min() < 0 or values.max() > 65535:
            raise VaekitError(f"{path}: holds 32-bit pixel values outside 0..65535; use 8- or 16-bit images")
        return Image.fromarray(values.astype(np.float32) / 65535)
    if ImageMode.getmode(im.mode).typestr not in ("|u1", "|b1"):
        raise VaekitError(
            f"{path}: has image mode {im.mode}, not 8- or 16-bit pixels; save it as 8- or 16-bit"
        )
    return im


def _pixels(im: Image.Image, colour: bool) -> np.ndarray:
    """An image from :func:`_open_image` as (H, W) grey or (H, W, 3) RGB float32 values in [0, 1]."""
    if im.mode == "F":  # 16-bit grey, already scaled
        grey = np.asarray(im)
        return np.repeat(grey[..., None], 3, axis=-1) if colour else grey
    return np.asarray(im.convert("RGB" if colour else "L"), dtype=np.float32) / 255


def _read_image_folder(
    folder: Path, files: list[Path], resize: tuple[int, int] | None, crop: imagecache.Crop | None
) -> np.ndarray:
    """The images ``files`` below ``folder`` (any of them 16-bit: 8-bit folders are cached as bytes,
    :mod:`vaekit.imagecache`), centre-cropped and resized as asked.

    Returns float32 pixels in [0, 1], (N, H, W) when every image is grey, else (N, H, W, 3) RGB,
    each image scaled by its own bit depth (255 for 8-bit, 65535 for 16-bit).
    """
    # one image decoded at a time, resized before the next: memory holds the resized images and one
    # at full size, and their number of values is checked as it grows
    images, pixels, colour = [], 0, False
    for p in files:
        im = _open_image(p)
        colour = colour or im.mode not in ("1", "L", "F")
        if crop is not None:
            im = im.crop(imagecache.crop_box(im.width, im.height, crop))
        if resize is not None:
            im = im.resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
        images.append(im)
        pixels += im.width * im.height
        limits.check_data(
            folder, pixels * (3 if colour else 1), 4 * pixels * (3 if colour else 1), "images hold"
        )
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise VaekitError(
            f"{folder}: images have {len(sizes)} different sizes "
            f"{sorted(f'{h}x{w}' for w, h in sizes)[:3]} (HxW)...; "
            "pass --resize HxW to resize them"
        )
    return np.stack([_pixels(im, colour) for im in images])


def _folder_labels(files: list[Path]) -> np.ndarray | None:
    """(N,) labels of the images: the index of each one's sub-folder, when there are several."""
    classes = sorted({p.parent for p in files})
    return np.array([classes.index(p.parent) for p in files]) if len(classes) > 1 else None


def _image_files(folder: Path) -> list[Path]:
    """The PNG/JPEG files below ``folder``, sorted, without hidden entries (``.ipynb_checkpoints``...)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def class_names(folder: str | Path) -> tuple[str, ...] | None:
    """The class names of an image folder's labels (label k is the k-th name): its sub-folders'
    paths, when the images lie in more than one; None for a single folder or for a file."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    classes = sorted({p.parent for p in _image_files(folder)})
    return tuple(str(c.relative_to(folder)) for c in classes) if len(classes) > 1 else None


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


def _check_signature(f: io.BufferedIOBase, path: Path) -> None:
    """Refuse an .npy or .npz file that does not start as one (np.load would call it pickled data)."""
    start = f.read(8)
    f.seek(0)
    if not start.startswith(SIGNATURES[path.suffix]):
        raise VaekitError(
            f"{path}: not a valid {path.suffix} file (it does not start with {SIGNATURES[path.suffix][0]!r})"
        )


def _check_npy_header(f: io.BufferedIOBase, where: str, size: int) -> tuple[int, int]:
    """Read the header of the .npy array at ``f``'s position (a file, or a member of an .npz, of
    ``size`` bytes) and refuse it, before numpy allocates the array, when it declares more data
    than the file holds or than vaekit reads. Returns (values, bytes) declared; rewinds ``f``.
    """
    start = f.tell()
    if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
        raise VaekitError(
            f"{where}: not an .npy array (it does not start with {np.lib.format.MAGIC_PREFIX!r})"
        )
    f.seek(start)
    version = np.lib.format.read_magic(f)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise VaekitError(f"{where}: .npy format version {version} is not one vaekit reads (1.0 or 2.0)")
    shape, _, dtype = readers[version](f)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    held = size - (f.tell() - start)
    f.seek(start)
    if dtype.hasobject:  # numpy itself refuses it (allow_pickle=False) before reading any data
        return 0, 0
    if nbytes > held:
        raise VaekitError(
            f"{where}: its header declares shape {limits.show(shape)} of {dtype} ({nbytes:,} bytes), "
            f"but the file holds {max(held, 0):,} bytes of data"
        )
    limits.check_data(where, count, nbytes, "its header declares")
    return count, nbytes


def _read_npz(f: io.BufferedIOBase, path: Path) -> np.ndarray | Data:
    """The one array of an .npz file, or its own splits (x_train, x_test, y_train, y_test).

    Only the arrays used are read, each after its header is checked (:func:`_check_npy_header`,
    against the uncompressed size the archive declares for it, which zipfile never exceeds),
    so that a small archive inflating to gigabytes is refused before it is inflated.
    """
    with np.load(f, allow_pickle=False) as z:
        splits = "x_train" in z and "x_test" in z
        if not splits and len(z.files) != 1:
            raise VaekitError(f"{path}: holds arrays {z.files}; expected one array, or x_train and x_test")
        keys = [k for k in ("x_train", "x_test", "y_train", "y_test") if k in z] if splits else z.files
        names = set(z.zip.namelist())
        total = [0, 0]
        for key in keys:
            name = key if key in names else f"{key}.npy"
            with z.zip.open(name) as member:
                count, nbytes = _check_npy_header(member, f"{path}[{key}]", z.zip.getinfo(name).file_size)
            total = [total[0] + count, total[1] + nbytes]
            limits.check_data(path, total[0], total[1], "its arrays declare")
        arrays = {key: z[key] for key in keys}
    return _npz_with_splits(path, arrays) if splits else arrays[keys[0]]


def read_file(
    path: str | Path,
    resize: tuple[int, int] | None = None,
    *,
    crop: imagecache.Crop | None = None,
    label_column: str | None = None,
) -> tuple[Tensor | ByteRows, Tensor | None, tuple[int, int, int] | None] | Data:
    """Every row of a user's ``.npy``, ``.npz``, ``.csv`` file or image folder.

    Returns ``(rows (n, d), labels (n,) or None, image shape or None)`` (the rows of an ``.npy``
    file of uint8 images read from disk as used, as :class:`~vaekit.byterows.ByteRows`), or a
    :class:`Data` when an ``.npz`` file holds its own ``x_train``/``x_test`` splits.
    label_column : the header's name of a CSV file's column of class labels 0, 1, 2, ...
    """
    path = Path(path)
    if label_column is not None and path.suffix != ".csv":
        raise VaekitError(f"{path}: a label column is a column of a .csv file's header; this is not one")
    try:
        is_folder = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise VaekitError(f"{path}: no such file or folder") from e
    except OSError as e:  # a name over 255 bytes, a loop of links, no permission
        raise VaekitError(f"{path}: cannot be read ({e.strerror or e})") from e
    y: np.ndarray | None = None
    try:
        if is_folder:
            files = _image_files(path)
            if not files:
                raise VaekitError(f"{path}: holds no .png or .jpg images")
            y = _folder_labels(files)
            labels = torch.from_numpy(y.astype(np.int64)) if y is not None else None
            cached = imagecache.cached_folder(path, files, _open_image, resize, crop)
            if cached is not None:  # 8-bit images: decoded once, then read from the cache
                return cached[0], labels, cached[1]
            x = _read_image_folder(path, files, resize, crop)
        elif path.suffix in SIGNATURES:
            with storage.open_regular(path) as f:
                _check_signature(f, path)
                mapped = byterows.open_npy(path) if path.suffix == ".npy" else None
                if mapped is not None:  # uint8 images: read a minibatch at a time
                    return mapped[0], None, mapped[1]
                if path.suffix == ".npy":
                    _check_npy_header(f, str(path), os.fstat(f.fileno()).st_size)
                    x = np.load(f, allow_pickle=False)
                else:
                    found = _read_npz(f, path)
                    if isinstance(found, Data):
                        return found
                    x = found
        elif path.suffix == ".csv":
            x, y = _read_csv(path, label_column)
        else:
            raise VaekitError(f"{path}: unknown file type; use .npy, .npz, .csv or a folder of images")
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise VaekitError(f"{path}: cannot be read ({e})") from e
    rows, shape = as_rows(x, str(path))
    return rows, (torch.from_numpy(y.astype(np.int64)) if y is not None else None), shape


def load_file(
    path: str | Path,
    resize: tuple[int, int] | None = None,
    seed: int = 0,
    crop: imagecache.Crop | None = None,
    label_column: str | None = None,
) -> Data:
    """A user's data with train and test splits.

    An ``.npz`` with ``x_train`` and ``x_test`` (and optionally ``y_train``,
    ``y_test``) keeps its splits; any other file has 10% of its rows held out
    (seeded) as the test split. See :func:`read_file` for the formats and ``label_column``.
    """
    found = read_file(path, resize, crop=crop, label_column=label_column)
    if isinstance(found, Data):
        return found
    rows, labels, shape = found
    x_train, x_test, y_train, y_test = _split(rows, labels, seed, path)
    return Data(x_train, x_test, y_train, y_test, shape, str(path), classes=class_names(path))


def _npz_conditions(y: np.ndarray, n: int, where: str) -> Tensor:
    """The y of an .npz file's n examples, checked as :class:`~vaekit.VAE` checks y.

    Returns (n,) class labels 0, 1, 2, ... as int64, or (n, c) condition vectors as float32.
    """
    a = conditions.condition_array(y, where)  # numbers, (n,) or (n, c), finite
    if len(a) != n:
        raise VaekitError(f"{where}: has {len(a)} rows for {n} examples")
    if a.ndim == 1:
        return torch.from_numpy(conditions.class_labels(a, where))
    with np.errstate(over="ignore"):
        vectors = a.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise VaekitError(f"{where}: holds values too large for float32")
    return torch.from_numpy(vectors)


def _npz_with_splits(path: Path, arrays: dict[str, np.ndarray]) -> Data:
    """An .npz file's own splits x_train and x_test, with y_train and y_test (both or neither)."""
    x_train, shape = as_rows(arrays["x_train"], f"{path}[x_train]")
    x_test, shape_test = as_rows(arrays["x_test"], f"{path}[x_test]")
    if x_train.shape[1] != x_test.shape[1] or shape != shape_test:
        raise VaekitError(f"{path}: x_train and x_test rows differ in shape")
    if ("y_train" in arrays) != ("y_test" in arrays):
        has, lacks = ("y_train", "y_test") if "y_train" in arrays else ("y_test", "y_train")
        raise VaekitError(f"{path}: has {has} but no {lacks}; give the labels of both splits or of neither")
    levels = BYTE_LEVELS if arrays["x_train"].dtype == arrays["x_test"].dtype == np.uint8 else None
    if "y_train" not in arrays:
        return Data(x_train, x_test, None, None, shape, str(path), levels)
    y_train = _npz_conditions(arrays["y_train"], len(x_train), f"{path}[y_train]")
    y_test = _npz_conditions(arrays["y_test"], len(x_test), f"{path}[y_test]")
    if y_train.shape[1:] != y_test.shape[1:]:
        raise VaekitError(
            f"{path}: y_train has shape {tuple(y_train.shape)} and y_test {tuple(y_test.shape)}; "
            "both must be labels (n,) or condition vectors of one width (n, c)"
        )
    return Data(x_train, x_test, y_train, y_test, shape, str(path), levels)


def load_cifar10(url: str = cifar.URL) -> Data:
    """CIFAR-10 (50,000 train and 10,000 test RGB images, 32x32, 10 classes) as bytes in memory
    (:mod:`vaekit.cifar`: the binary release, from ``$VAEKIT_DATA``, the cache, or a checked download)."""
    arrays, classes, where = cifar.read_cifar10(url)
    return Data(
        x_train=ByteRows(arrays["x_train"], source=where),
        x_test=ByteRows(arrays["x_test"], source=where),
        y_train=torch.from_numpy(arrays["y_train"]),
        y_test=torch.from_numpy(arrays["y_test"]),
        image_shape=cifar.SHAPE,
        source=f"cifar10 ({where})",
        levels=BYTE_LEVELS,
        classes=tuple(classes),
    )


DATASETS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10}


def data_spec(spec: str) -> str:
    """A data set's name, or a file's absolute path: how a run records its data (so that a
    resume or an evaluation finds it from any folder)."""
    return spec if spec in DATASETS else str(Path(spec).resolve())


def load_data(
    spec: str | Path,
    resize: tuple[int, int] | None = None,
    seed: int = 0,
    crop: imagecache.Crop | None = None,
    label_column: str | None = None,
) -> Data:
    """A named data set (``mnist``, ``fashion-mnist``) or a path to a user's file or folder
    (``label_column``: a CSV file's column of labels, :func:`read_file`)."""
    if str(spec) in DATASETS:
        return DATASETS[str(spec)]()
    return load_file(spec, resize=resize, seed=seed, crop=crop, label_column=label_column)


def load_rows(
    spec: str | Path,
    resize: tuple[int, int] | None = None,
    crop: imagecache.Crop | None = None,
    label_column: str | None = None,
) -> tuple[Tensor | ByteRows, Tensor | None, tuple[int, int, int] | None]:
    """Rows to encode or reconstruct: a named data set's test split, or every row of a file."""
    found = (
        DATASETS[str(spec)]()
        if str(spec) in DATASETS
        else read_file(spec, resize, crop=crop, label_column=label_column)
    )
    if isinstance(found, Data):
        return found.x_test, found.y_test, found.image_shape
    return found


def binarize(x: Tensor | ByteRows, generator: torch.Generator | None = None) -> Tensor | ByteRows:
    """One Bernoulli draw per pixel with P(1) = x, for x in [0, 1] (byte rows: a block at a time)."""
    if isinstance(x, ByteRows):
        return x.binarized(generator or torch.Generator().manual_seed(torch.seed()))
    return torch.bernoulli(x, generator=generator)
