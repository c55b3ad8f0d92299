"""When training stops and which weights it keeps: the validation split and the monitor of each
epoch's ELBO (its best epoch, early stopping, the cuts of the plateau schedule).

Early stopping (e.g. Prechelt 1998, "Early stopping - but when?") holds out part of the training
rows, watches their ELBO after each epoch and stops once it has not improved for ``patience``
epochs; the model then keeps the weights of its best epoch. "Improved" is strictly higher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vaekit.data import binarize
from vaekit.errors import VaekitError
from vaekit.optim import LR_SCHEDULES

if TYPE_CHECKING:
    from vaekit.config import TrainConfig

#: the metric the monitor follows: the validation ELBO when the epoch's row has one, else the train ELBO
VALIDATION_ELBO, TRAIN_ELBO = "val_elbo", "train_elbo"
#: the prefix of the validation split's metrics in an epoch's row (val_elbo, val_recon, val_kl)
VALIDATION_PREFIX = "val_"
#: the checkpoint's tensor names of the best epoch's weights: this prefix and the module's names
BEST_PREFIX = "best."


def check_stopping(config: TrainConfig) -> str | None:
    """The problem with the validation, early-stopping and plateau settings, if any."""
    if not 0 <= config.validation < 1:
        return f"validation must be a fraction in [0, 1), got {config.validation!r}"
    if config.patience < 0:
        return f"patience must be non-negative, got {config.patience!r}"
    if config.patience and not config.validation:
        return "patience needs a validation split to watch: give validation (e.g. 0.1) too"
    if config.plateau_patience < 1 or not 0 < config.plateau_factor < 1:
        return "plateau_patience must be at least 1 and plateau_factor in (0, 1)"
    return None


def validation_count(n: int, fraction: float) -> int:
    """Rows of n held out for validation: ``fraction`` of them rounded, at least one if fraction > 0."""
    return max(1, round(fraction * n)) if fraction else 0


def hold_out(
    x: Tensor, y: Tensor | None, fraction: float, generator: torch.Generator, binarized: bool, what: str
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """Split rows x ``(n, d)`` (and conditions y ``(n, c)``) into training and validation rows.

    The ``validation_count`` validation rows are drawn by ``generator`` (seeded by the run's seed
    plus VALIDATION_SEED); both parts keep the rows' order. ``binarized``: the validation rows are
    then binarized once from the same generator, fixed targets like a test split's.
    Returns (x_train, y_train, x_val, y_val).
    """
    n, k = len(x), validation_count(len(x), fraction)
    if k >= n:
        raise VaekitError(f"{what}: validation={fraction:g} of {n} rows leaves none to train on")
    perm = torch.randperm(n, generator=generator)
    val, train = perm[:k].sort().values, perm[k:].sort().values
    x_val = binarize(x[val], generator) if binarized else x[val]
    if y is None:
        return x[train], None, x_val, None
    return x[train], y[train], x_val, y[val]


class Monitor:
    """The monitored ELBO of a run's epochs (validation ELBO with a validation split, else train ELBO).

    best_elbo, best_epoch : the best so far and its epoch (1-based; 0 before the first epoch)
    best_weights : the module's state at ``best_epoch``, kept when ``config.patience`` is on
    lr_scale, last_cut : the factor of the plateau schedule's cuts so far and the epoch of the last
    stopped : early stopping has ended the run
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.best_elbo: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, Tensor] | None = None
        self.lr_scale = 1.0
        self.last_cut = 0
        self.stopped = False

    def epoch_end(self, row: dict[str, Any], module: nn.Module) -> None:
        """Follow the ELBO of the epoch's metrics ``row``; a row with a validation ELBO gets
        ``best_epoch``, the best epoch so far (the last row's is the run's)."""
        epoch, elbo = int(row["epoch"]), row.get(VALIDATION_ELBO, row[TRAIN_ELBO])
        if self.best_elbo is None or elbo > self.best_elbo:
            self.best_elbo, self.best_epoch = elbo, epoch
            if self.config.patience:
                self.best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        LR_SCHEDULES[self.config.lr_schedule].epoch_end(self, epoch, self.config)
        patience = self.config.patience
        self.stopped = bool(patience) and epoch - self.best_epoch >= patience
        if VALIDATION_ELBO in row:
            row["best_epoch"] = self.best_epoch

    def restore_best(self, module: nn.Module) -> None:
        """Give ``module`` the best epoch's weights (when they were kept), in place."""
        if self.best_weights is not None:
            module.load_state_dict(self.best_weights)

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The best weights as ``best.<name>`` tensors, and the JSON-able counters."""
        tensors = {BEST_PREFIX + k: v for k, v in (self.best_weights or {}).items()}
        values = {
            "best_elbo": self.best_elbo,
            "best_epoch": self.best_epoch,
            "lr_scale": self.lr_scale,
            "last_cut": self.last_cut,
            "stopped": self.stopped,
        }
        return tensors, values

    def load_state_dict(self, tensors: dict[str, Tensor], values: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict`'s output; ``values`` None (a checkpoint written before the
        monitor existed) leaves the fresh state, right for a run without validation or plateau."""
        if values is None:
            return
        best = {k.removeprefix(BEST_PREFIX): v for k, v in tensors.items() if k.startswith(BEST_PREFIX)}
        self.best_weights = best or None
        self.best_elbo = None if values["best_elbo"] is None else float(values["best_elbo"])
        self.best_epoch, self.last_cut = int(values["best_epoch"]), int(values["last_cut"])
        self.lr_scale, self.stopped = float(values["lr_scale"]), bool(values["stopped"])
