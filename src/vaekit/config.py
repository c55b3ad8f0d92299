"""Typed configuration: every default of the model and of training is set here, once.

The estimator :class:`vaekit.VAE` takes these fields as constructor arguments,
and the command line reads its defaults from here, so a default changes in one place.
"""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from vaekit import limits
from vaekit.errors import VaekitError
from vaekit.likelihoods import LIKELIHOODS

Activation = Literal["relu", "tanh"]
Estimator = Literal["analytic", "mc"]
Optimizer = Literal["adam", "adagrad"]
Binarize = Literal["none", "static", "dynamic"]
Objective = Literal["elbo", "iwae"]
Arch = Literal["mlp", "conv"]
Device = Literal["cpu", "cuda", "auto"]
MAX_SEED = 2**62  # seeds (and seed + 2, used for held-out data) must fit torch's 64-bit generator
LRSchedule = Literal["constant", "burda"]


#: latent size of `vaekit train --conditional` when --latent-dim is not given. With the label given
#: to both networks, a small z leaves the class to y: on MNIST (10 epochs, 784-400-J) 96% of prior
#: samples for label c were classified as c with J = 4, 75% with J = 20 (benchmarks/conditional_accuracy.py).
CONDITIONAL_LATENT_DIM = 4


def _check_literals(cfg: object) -> None:
    """Reject a value of the wrong type or outside its field's ``Literal`` choices, naming the field."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):  # type: ignore[arg-type]
        hint, value = hints[f.name], getattr(cfg, f.name)
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        if choices and value not in choices:
            raise VaekitError(f"{f.name} must be one of {list(choices)}, got {value!r}")
        if not choices and not _has_type(value, hint):
            kind = TYPE_NAMES.get(hint, "a tuple")
            raise VaekitError(f"{f.name} must be {kind}, got {value!r}")
        if hint is float:  # 3 -> 3.0, so that torch never sees a huge Python int
            object.__setattr__(cfg, f.name, float(value))  # type: ignore[arg-type]


TYPE_NAMES = {bool: "True or False", float: "a finite number", int: "an integer", str: "a string"}


def _has_type(value: object, hint: object) -> bool:
    """isinstance for the field types used here: bool is not a number, an int is a float,
    numpy scalars count, and a float must be finite."""
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool | np.bool_):
        return False
    if hint is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    if hint is int:
        return isinstance(value, numbers.Integral)
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple)
    return isinstance(value, hint)  # type: ignore[arg-type]


def _check_positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise VaekitError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The generative model p(z) p(x|z) and the inference model q(z|x)."""

    latent_dim: int = 20  # J, the size of z; the prior is N(0, I_J)
    hidden: tuple[int, ...] = (400,)  # hidden layer widths of encoder and (mirrored) decoder
    activation: Activation = "relu"  # the paper uses tanh; ReLU is the modern default
    likelihood: str = "bernoulli"  # a key of vaekit.likelihoods.LIKELIHOODS
    sigma: float = 1.0  # standard deviation of the 'gaussian_fixed' likelihood
    conditional: bool = False  # encoder and decoder also take a condition y (labels one-hot, or vectors)
    arch: Arch = "mlp"  # 'conv': convolutional encoder/decoder for (C, H, W) images, H and W divisible by 4

    def __post_init__(self) -> None:
        limits.check_config(self)
        _check_literals(self)
        _check_positive(self, "latent_dim", "sigma")
        if not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in self.hidden
        ):
            raise VaekitError(f"hidden must be positive layer widths, got {self.hidden!r}")
        if self.likelihood not in LIKELIHOODS:
            raise VaekitError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {self.likelihood!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the ELBO (SGVB / minibatch AEVB)."""

    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # M, examples per minibatch
    optimizer: Optimizer = "adam"  # the paper used Adagrad; Adam is the modern default
    lr: float = 1e-3  # learning rate
    lr_schedule: LRSchedule = "constant"  # 'burda': 8 stages, lr * 10^(-i/7) for 3^i/3280 of the epochs
    adam_eps: float = 1e-8  # Adam's epsilon (torch's default); Burda et al. (2015) used 1e-4
    weight_decay: float = 0.0  # L2 penalty, the paper's small Gaussian prior on parameters
    estimator: Estimator = "analytic"  # SGVB estimator B (analytic KL) or A ('mc', all Monte Carlo)
    samples: int = 1  # L, samples of z per data point
    beta: float = 1.0  # weight of the KL term; 1 is the ELBO, >1 a beta-VAE
    objective: Objective = "elbo"  # 'iwae': the importance-weighted bound with k = samples (Burda et al.)
    warmup_steps: int = 0  # KL warm-up: beta rises linearly from 0 over this many steps (0: off)
    free_bits: float = 0.0  # per-dimension floor lambda on the batch-mean KL, nats (Kingma et al. 2016)
    binarize: Binarize = "none"  # Bernoulli targets: grey levels, one fixed draw, or a new draw each epoch
    seed: int = 0  # seeds weights, data order, eps and binarization
    verbose: bool = False  # show a progress bar with the running ELBO
    device: Device = "cpu"  # where the data and the model live while training; 'auto': cuda if available
    compile: bool = False  # wrap the objective in torch.compile (on CUDA with CUDA graphs); off: eager
    checkpoint_every: int = 500  # optimiser steps between checkpoints of a run folder (0: epoch ends only)

    def __post_init__(self) -> None:
        limits.check_config(self)
        _check_literals(self)
        _check_positive(self, "epochs", "batch_size", "lr", "samples", "adam_eps")
        if not 0 <= self.seed < MAX_SEED:
            raise VaekitError(f"seed must be in [0, 2**62), got {self.seed!r}")
        if self.checkpoint_every < 0:
            raise VaekitError(f"checkpoint_every must be non-negative, got {self.checkpoint_every!r}")
        if self.weight_decay < 0 or self.beta < 0:
            raise VaekitError("weight_decay and beta must be non-negative")
        if self.warmup_steps < 0 or self.free_bits < 0:
            raise VaekitError("warmup_steps and free_bits must be non-negative")
        if self.objective == "iwae" and (self.beta != 1 or self.warmup_steps or self.estimator != "analytic"):
            raise VaekitError("objective 'iwae' needs beta 1, no warmup_steps and the 'analytic' estimator")
        if self.free_bits > 0 and (self.objective != "elbo" or self.estimator != "analytic"):
            raise VaekitError("free_bits needs objective 'elbo' and estimator 'analytic' (closed-form KL)")


def split_params(params: dict[str, object]) -> tuple[ModelConfig, TrainConfig]:
    """Sort flat estimator parameters into the two configs (validating both)."""
    model_keys = {f.name for f in fields(ModelConfig)}
    model = {k: v for k, v in params.items() if k in model_keys}
    train = {k: v for k, v in params.items() if k not in model_keys}
    if isinstance(model.get("hidden"), list):
        model["hidden"] = tuple(model["hidden"])  # type: ignore[arg-type]
    return ModelConfig(**model), TrainConfig(**train)  # type: ignore[arg-type]
