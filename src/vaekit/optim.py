"""Optimisers and learning-rate schedules, each a registry filled where it is defined.

:data:`OPTIMIZERS` builds torch's fused optimiser over the trainer's one flat parameter
buffer; :data:`LR_SCHEDULES` gives the learning rate of each optimisation step.

The schedules are not torch.optim.lr_scheduler's: the trainer sets every step's rate from a
closed form of (step, run length, the cuts of :class:`Plateau` so far), so that a resumed run
computes the very floats of an uninterrupted one whatever step it resumes at. torch's
CosineAnnealingLR steps a recursive form (which drifts from the closed form in the last bits)
and ReduceLROnPlateau multiplies the optimiser's stored rate, which the trainer overwrites each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from vaekit.config import TrainConfig
    from vaekit.stopping import Monitor


def adam(params: list[Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with ``config.adam_eps``: the modern default."""
    return torch.optim.Adam(
        params, lr=config.lr, weight_decay=config.weight_decay, eps=config.adam_eps, fused=True
    )


def adagrad(params: list[Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """Adagrad (Duchi et al. 2011): the optimiser of Kingma & Welling's experiments."""
    return torch.optim.Adagrad(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)


OPTIMIZERS: dict[str, Callable[[list[Tensor], TrainConfig], torch.optim.Optimizer]] = {
    "adam": adam,
    "adagrad": adagrad,
}


class Schedule:
    """A learning-rate schedule: the rate of step ``step`` (0-based) of a run of ``total_steps``."""

    #: whether the rate of a step depends on the run's length: such a run cannot be extended
    #: by more epochs and stay equal to a longer run
    length_dependent: bool = False

    def lr(self, base: float, step: int, total_steps: int) -> float:
        raise NotImplementedError

    def epoch_end(self, monitor: Monitor, epoch: int, config: TrainConfig) -> None:
        """After epoch ``epoch`` (1-based) was monitored: a schedule that follows the monitored
        ELBO changes ``monitor.lr_scale`` here (the others do nothing)."""


class Constant(Schedule):
    """The learning rate ``lr`` for every step."""

    def lr(self, base: float, step: int, total_steps: int) -> float:
        return base


#: Burda et al. (2015): stage i = 0..7 lasts 3^i epochs (3280 in all) at learning rate lr * 10^(-i/7)
BURDA_STAGES = 8
BURDA_EPOCHS = (3**BURDA_STAGES - 1) // 2


def burda_stage(step: int, total_steps: int) -> int:
    """The stage 0..7 of Burda et al.'s schedule that optimisation step ``step`` (0-based) falls in.

    The 8 stages keep their 3^i : 3280 proportions of ``total_steps``, so a run of
    3280 epochs holds stage i for exactly 3^i epochs and a shorter run is the same
    schedule scaled down. Integer arithmetic: the boundaries are exact.
    """
    end = 0
    for i in range(BURDA_STAGES):
        end += 3**i
        if step * BURDA_EPOCHS < end * total_steps:
            return i
    return BURDA_STAGES - 1


class Burda(Schedule):
    """Burda et al. (2015), appendix C: 8 stages, lr * 10^(-i/7) for 3^i/3280 of the run."""

    length_dependent = True

    def lr(self, base: float, step: int, total_steps: int) -> float:
        return base * 10 ** (-burda_stage(step, total_steps) / 7)


class Cosine(Schedule):
    """Cosine decay from ``lr`` towards 0 over the run (Loshchilov & Hutter 2017, SGDR, without
    restarts): lr * (1 + cos(pi * step / total_steps)) / 2, so the last step's rate is ~0."""

    length_dependent = True

    def lr(self, base: float, step: int, total_steps: int) -> float:
        return base * (1 + math.cos(math.pi * step / total_steps)) / 2


class Plateau(Schedule):
    """Reduce on plateau: ``lr`` times ``plateau_factor`` after each ``plateau_patience`` epochs in
    which the monitored ELBO (validation, else train) did not improve on its best or on the last cut."""

    def lr(self, base: float, step: int, total_steps: int) -> float:
        return base  # times monitor.lr_scale, as for every schedule

    def epoch_end(self, monitor: Monitor, epoch: int, config: TrainConfig) -> None:
        if epoch - max(monitor.best_epoch, monitor.last_cut) >= config.plateau_patience:
            monitor.lr_scale *= config.plateau_factor
            monitor.last_cut = epoch


LR_SCHEDULES: dict[str, Schedule] = {
    "constant": Constant(),
    "burda": Burda(),
    "cosine": Cosine(),
    "plateau": Plateau(),
}


def make_optimizer(params: list[Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """The registered optimiser ``config.optimizer`` over ``params``."""
    return OPTIMIZERS[config.optimizer](params, config)


def scheduled_lr(config: TrainConfig, step: int, total_steps: int | None, scale: float = 1.0) -> float:
    """The learning rate of step ``step`` of ``total_steps`` (unknown outside ``fit``: ``config.lr``),
    times ``scale`` (the cuts of :class:`Plateau`, :attr:`vaekit.stopping.Monitor.lr_scale`)."""
    if not total_steps:
        return config.lr
    return LR_SCHEDULES[config.lr_schedule].lr(config.lr, step, total_steps) * scale
