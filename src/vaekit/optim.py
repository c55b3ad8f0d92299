"""Optimisers and learning-rate schedules, each a registry filled where it is defined.

:data:`OPTIMIZERS` builds torch's fused optimiser over the trainer's one flat parameter
buffer; :data:`LR_SCHEDULES` gives the learning rate of each optimisation step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from vaekit.config import TrainConfig


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


LR_SCHEDULES: dict[str, Schedule] = {"constant": Constant(), "burda": Burda()}


def make_optimizer(params: list[Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """The registered optimiser ``config.optimizer`` over ``params``."""
    return OPTIMIZERS[config.optimizer](params, config)


def scheduled_lr(config: TrainConfig, step: int, total_steps: int | None) -> float:
    """The learning rate of step ``step`` of ``total_steps`` (unknown outside ``fit``: ``config.lr``)."""
    if not total_steps:
        return config.lr
    return LR_SCHEDULES[config.lr_schedule].lr(config.lr, step, total_steps)
