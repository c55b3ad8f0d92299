"""What users hand to :class:`vaekit.VAE`'s methods, checked: arrays, counts, seeds, image shapes.

Every problem is a one-line :class:`~vaekit.errors.VaekitError` naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

from vaekit.byterows import ByteRows
from vaekit.config import MAX_SEED
from vaekit.data import as_rows
from vaekit.errors import VaekitError, VaekitTypeError
from vaekit.likelihoods import Likelihood

ArrayLike = np.ndarray | Tensor | Sequence[Any]
MAX_COUNT = 2**31 - 1  # the most samples (n, k) one call may ask for


def array(X: ArrayLike, what: str) -> np.ndarray:
    """X as a numpy array (copying a tensor to the CPU); ragged or odd input is a VaekitError."""
    if type(X).__module__.startswith("scipy.sparse"):
        raise VaekitError(f"{what}: a sparse matrix; vaekit needs a dense array (X.toarray())")
    try:
        x = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
    except (ValueError, TypeError, RuntimeError) as e:
        raise VaekitError(f"{what}: not an array of numbers ({e})") from e
    if x.dtype.kind == "c":
        raise VaekitError(f"{what}: Complex data not supported ({x.dtype} values); expected real numbers")
    if x.dtype == object:  # numbers held as Python objects (a data frame of mixed columns)
        try:
            return x.astype(np.float64)
        except ValueError as e:  # a string that is not a number
            raise VaekitError(f"{what}: holds values that are not numbers ({e})") from e
        except TypeError as e:  # a value float() does not take (a dict, None)
            raise VaekitTypeError(f"{what}: holds values that are not numbers ({e})") from e
    return x


def data_rows(
    X: ArrayLike | ByteRows, what: str, likelihood: Likelihood, binarize: str, width: int | None = None
) -> Tensor | ByteRows:
    """X as ``(n, d)`` float32 rows in the likelihood's support (and in [0, 1] when binarizing).

    width : the number of features the model was fitted on (None: any)

    :class:`~vaekit.byterows.ByteRows` are checked without being read into memory (their values
    are the 8-bit levels between the smallest and the largest stored) and returned as they are.
    """
    rows = X if isinstance(X, ByteRows) else as_rows(array(X, what), what)[0]
    values = rows.levels_present() if isinstance(rows, ByteRows) else rows
    if width is not None and rows.shape[1] != width:
        raise VaekitError(
            f"{what} has {rows.shape[1]} features, but VAE is expecting {width} features as input"
        )
    problem = likelihood.check_data(values)
    if problem:
        raise VaekitError(f"{what}: {problem}")
    if binarize != "none" and not 0 <= float(values.min()) <= float(values.max()) <= 1:
        raise VaekitError(
            f"{what}: values range over [{float(values.min()):g}, {float(values.max()):g}]; "
            f"binarize={binarize!r} draws pixels with P(1) = value, so it needs values in [0, 1]"
        )
    return rows


def count(n: object, name: str) -> int:
    """A positive number of samples or examples, at most :data:`MAX_COUNT`."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 < n <= MAX_COUNT:
        raise VaekitError(f"{name} must be a positive integer up to {MAX_COUNT}, got {n!r}")
    return int(n)


def seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < MAX_SEED:
        raise VaekitError(f"seed must be an integer in [0, 2**62), got {value!r}")
    return int(value)


def image_shape_of(X: ArrayLike) -> tuple[int, ...] | None:
    """(C, H, W) of image-shaped input, or a square single-channel guess for flat rows."""
    shape = array(X, "X").shape
    if len(shape) == 3:
        return (1, *shape[1:])
    if len(shape) == 4:
        return (shape[3], shape[1], shape[2])
    side = round(shape[1] ** 0.5) if len(shape) == 2 else 0
    return (1, side, side) if side * side == shape[-1] else None


def check_image_shape(image_shape: Sequence[int] | None, n_features: object) -> tuple[int, ...] | None:
    """Validate the width and (C, H, W) shape a model is built for; returns the shape as a tuple."""
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise VaekitError(f"n_features_in must be a positive integer, got {n_features!r}")
    if image_shape is None:
        return None
    if (
        len(image_shape) != 3
        or not all(isinstance(v, int | np.integer) and v > 0 for v in image_shape)
        or int(np.prod(image_shape)) != n_features
    ):
        raise VaekitError(
            f"image_shape {list(image_shape)} is not (C, H, W) of positive sizes whose product is "
            f"the {n_features} features per example"
        )
    return tuple(int(v) for v in image_shape)
