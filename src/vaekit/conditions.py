"""The condition y of a conditional VAE: class labels (one-hot encoded) or a float vector per example.

A model's condition setup is ``(cond_dim, n_classes)``: labels give
``cond_dim = n_classes`` (the one-hot width); vectors give their width and
``n_classes = None``. Doersch (2016), section 3; Sohn et al. (2015).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import VaekitError
from vaekit.limits import show


def condition_array(y: Any, what: str) -> np.ndarray:
    """y as a finite numeric array: labels ``(n,)`` or condition vectors ``(n, c)``."""
    a = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise VaekitError(f"{what}: holds {a.dtype} values, expected class labels or numbers")
    if a.ndim not in (1, 2) or len(a) == 0:
        raise VaekitError(f"{what}: has shape {a.shape}; expected labels (n,) or condition vectors (n, c)")
    if not np.isfinite(a).all():
        raise VaekitError(f"{what}: contains NaN or infinite values")
    return a


def class_labels(a: np.ndarray, what: str) -> np.ndarray:
    """Labels ``(n,)`` as int64, refusing negative or fractional values."""
    if a.min() < 0 or not np.array_equal(a, np.round(a)):
        raise VaekitError(f"{what}: class labels must be non-negative integers 0, 1, 2, ...")
    return a.astype(np.int64)


def condition_setup(y: Any, what: str = "y") -> tuple[int, int | None]:
    """``(cond_dim, n_classes)`` of training conditions: labels 0..K-1 ``(n,)`` or vectors ``(n, c)``."""
    a = condition_array(y, what)
    if a.ndim == 2:
        return a.shape[1], None
    n_classes = int(class_labels(a, what).max()) + 1
    if n_classes < 2:
        raise VaekitError(f"{what}: a conditional model needs at least 2 classes, got labels {{0}}")
    return n_classes, n_classes


def check_setup(cond: tuple[int, object], conditional: bool) -> None:
    """Refuse a condition setup ``(cond_dim, n_classes)`` no fit makes (a hostile run config):
    a conditional model has cond_dim > 0, and labels' n_classes (2 or more) is their one-hot width."""
    cond_dim, n_classes = cond
    if bool(conditional) != (cond_dim > 0):
        raise VaekitError(f"conditional={conditional!r} does not match cond_dim {show(cond_dim)}")
    if n_classes is None:
        return
    if (
        isinstance(n_classes, bool)
        or not isinstance(n_classes, int)
        or n_classes != cond_dim
        or n_classes < 2
    ):
        raise VaekitError(
            f"n_classes {show(n_classes)} does not match cond_dim {show(cond_dim)} "
            "(labels are one-hot: n_classes = cond_dim)"
        )


def as_condition(y: Any, n: int, cond_dim: int, n_classes: int | None, what: str = "y") -> Tensor:
    """The condition tensor ``(n, cond_dim)`` float32 for n examples.

    y : a label (int, repeated n times), labels ``(n,)``, or vectors ``(n, cond_dim)``
    """
    if y is None:
        raise VaekitError(f"{what}: this VAE is conditional; pass the condition (labels or vectors)")
    a = condition_array(np.full(n, y) if np.ndim(y) == 0 else y, what)
    if len(a) != n:
        raise VaekitError(f"{what}: has {len(a)} rows for {n} examples")
    if n_classes is None:
        if a.ndim != 2 or a.shape[1] != cond_dim:
            raise VaekitError(f"{what}: expected condition vectors of shape (n, {cond_dim}), got {a.shape}")
        return torch.from_numpy(a.astype(np.float32))
    if a.ndim != 1:
        raise VaekitError(f"{what}: expected class labels (n,) in 0..{n_classes - 1}, got shape {a.shape}")
    labels = class_labels(a, what)
    if labels.max() >= n_classes:
        raise VaekitError(
            f"{what}: label {labels.max()} but the model knows classes 0..{n_classes - 1} "
            "(with partial_fit, pass classes= on the first call)"
        )
    return torch.nn.functional.one_hot(torch.from_numpy(labels), n_classes).float()


def label_index(label: str | int, classes: Sequence[str] | None, n_classes: int | None) -> int:
    """A class label given by its name (one of ``classes``, as an image folder's sub-folders name
    them) or its number 0..n_classes-1."""
    if classes and str(label) in classes:
        return list(classes).index(str(label))
    try:
        k = int(label)
    except ValueError:
        names = f"one of {list(classes)} or " if classes else ""
        raise VaekitError(f"label {label!r}: expected {names}a number") from None
    if n_classes is not None and not 0 <= k < n_classes:
        raise VaekitError(f"label {k}: the model has classes 0..{n_classes - 1}")
    return k
