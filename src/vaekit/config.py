"""Typed configuration: every default of the model and of training is set here, once.

The estimator :class:`vaekit.VAE` takes these fields as constructor arguments, and the
command line makes one flag per field from them (its type, its help, its choices: a
``Literal`` or the registry in :data:`REGISTRIES`), so a default or a choice changes in one place.
"""

from __future__ import annotations

import json
import math
import numbers
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from vaekit import limits, scaling
from vaekit.errors import VaekitError
from vaekit.likelihoods import LIKELIHOODS
from vaekit.networks import ACTIVATIONS, ARCHITECTURES, check_architecture
from vaekit.objectives import OBJECTIVES
from vaekit.optim import LR_SCHEDULES, OPTIMIZERS
from vaekit.precision import Precision
from vaekit.priors import PRIORS, check_prior
from vaekit.stopping import check_stopping

Estimator = Literal["analytic", "mc"]
Binarize = Literal["none", "static", "dynamic"]
Device = Literal["cpu", "cuda", "auto"]
Standardize = Literal["auto", "on", "off"]
MAX_SEED = 2**62  # seeds (plus the offsets below) must fit torch's 64-bit generator

#: the random streams of a run, each seeded by the run's seed plus its offset: the held-out split
#: of a data file, the one draw of binarize='static', the one draw binarizing held-out data, the
#: draw binarizing the train digits on which ``reproduce kingma2013`` evaluates its train bound, and
#: (with the number of earlier calls) the draws of ``VAE.sample`` without a seed
SPLIT_SEED, STATIC_BINARIZATION_SEED, EVAL_BINARIZATION_SEED, TRAIN_BOUND_SEED, SAMPLE_SEED = 0, 1, 2, 3, 4
#: the validation split of ``validation``: which training rows it holds, then their one binarization
VALIDATION_SEED = 5

#: which registry the choices of a string field come from
REGISTRIES: dict[str, Mapping[str, object]] = {
    "activation": ACTIVATIONS,
    "likelihood": LIKELIHOODS,
    "arch": ARCHITECTURES,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "objective": OBJECTIVES,
    "prior": PRIORS,
}

#: latent size of `vaekit train --conditional` when --latent-dim is not given. With the label given
#: to both networks, a small z leaves the class to y: on MNIST (10 epochs, 784-400-J) 96% of prior
#: samples for label c were classified as c with J = 4, 75% with J = 20 (benchmarks/conditional_accuracy.py).
CONDITIONAL_LATENT_DIM = 4


def option(default: Any, help: str, flag: bool = True) -> Any:
    """A config field: its default and what it is (the CLI's help); ``flag`` False: no CLI flag."""
    return field(default=default, metadata={"help": help, "flag": flag})


def _check_fields(cfg: object) -> None:
    """Reject a value of the wrong type or outside its field's choices, naming the field."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):  # type: ignore[arg-type]
        hint, value = hints[f.name], getattr(cfg, f.name)
        choices = choices_of(f.name, hint)
        if choices and value not in choices:
            raise VaekitError(f"{f.name} must be one of {list(choices)}, got {value!r}")
        if not choices and not _has_type(value, hint):
            kind = TYPE_NAMES.get(hint, "a tuple" if typing.get_origin(hint) is tuple else "a mapping")
            raise VaekitError(f"{f.name} must be {kind}, got {value!r}")
        if hint is float:  # 3 -> 3.0, so that torch never sees a huge Python int
            object.__setattr__(cfg, f.name, float(value))  # type: ignore[arg-type]


def choices_of(name: str, hint: object) -> list[Any]:
    """The allowed values of a field: its ``Literal``'s, or its registry's keys (else [])."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    return sorted(REGISTRIES[name]) if name in REGISTRIES else []


TYPE_NAMES = {bool: "True or False", float: "a finite number", int: "an integer", str: "a string"}


def _has_type(value: object, hint: object) -> bool:
    """isinstance for the field types used here: bool is not a number, an int is a float,
    numpy scalars count, a float must be finite, and options are None or a JSON object."""
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    if hint not in (int, float, str) and typing.get_origin(hint) is not tuple:
        return _is_options(value)
    if isinstance(value, bool | np.bool_):
        return False
    if hint is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    if hint is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, str if hint is str else tuple)


def _is_options(value: object) -> bool:
    """None, or a mapping with string keys that JSON can hold (the run's config records it)."""
    if value is None:
        return True
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return False
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _check_positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise VaekitError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The generative model p(z) p(x|z) and the inference model q(z|x)."""

    latent_dim: int = option(
        20, "size J of the latent z (z_1, the layer the decoder reads, with upper_latents)"
    )
    hidden: tuple[int, ...] = option((400,), "hidden widths of the encoder (the decoder mirrors them)")
    activation: str = option("relu", "hidden activation (the paper used tanh)")
    likelihood: str = option("bernoulli", "the decoder's observation model p(x|z)")
    likelihood_options: dict[str, float] | None = option(None, "the likelihood's options, e.g. sigma")
    conditional: bool = option(False, "encoder and decoder also take a condition y (labels or vectors)")
    arch: str = option("mlp", "encoder/decoder networks ('conv': images with H and W divisible by 4)")
    arch_options: dict[str, Any] | None = option(None, "keyword options of the architecture's builder")
    standardize: Standardize = option(
        "auto",
        "standardize each column with the training split's mean and scale (vaekit.scaling); "
        "auto: for a real-line likelihood (gaussian) on data that are not images",
    )
    upper_latents: tuple[int, ...] = option(
        (), "sizes of stochastic layers z_2, z_3, ... above z (Burda et al. 2015's two layers: 50)"
    )
    upper_hidden: tuple[int, ...] = option(
        (100, 100), "hidden widths of q(z_l+1|z_l) between stochastic layers (p(z_l|z_l+1) mirrors them)"
    )
    prior: str = option("normal", "prior of the top stochastic layer (vamp: Tomczak & Welling 2018)")
    prior_options: dict[str, Any] | None = option(
        None, 'the prior\'s options, e.g. {"components": 500} pseudo-inputs of vamp'
    )

    #: the fields holding layer widths (positive integers; lists in a run's config.json)
    WIDTHS = ("hidden", "upper_latents", "upper_hidden")

    def __post_init__(self) -> None:
        limits.check_config(self)
        _check_fields(self)
        _check_positive(self, "latent_dim")
        for name in self.WIDTHS:
            widths = getattr(self, name)
            if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h > 0 for h in widths):
                raise VaekitError(f"{name} must be positive layer widths, got {widths!r}")
        LIKELIHOODS[self.likelihood].from_options(self.likelihood_options)
        check_architecture(self.arch, self.arch_options)
        scaling.check(self)
        check_prior(self.prior, self.prior_options)
        if self.prior == "vamp" and self.conditional:
            raise VaekitError(
                "prior 'vamp' is for unconditional models (its pseudo-inputs have no condition)"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the ELBO (SGVB / minibatch AEVB)."""

    epochs: int = option(10, "passes over the training set")
    batch_size: int = option(128, "M, examples per minibatch")
    optimizer: str = option("adam", "optimiser (the paper used adagrad)")
    lr: float = option(1e-3, "learning rate")
    lr_schedule: str = option(
        "constant",
        "learning-rate schedule (burda: 8 stages, lr * 10^(-i/7); cosine: decay to ~0 over the run; "
        "plateau: lr * plateau_factor when the validation, else train, ELBO stalls)",
    )
    plateau_factor: float = option(0.5, "lr_schedule plateau: the factor of each cut of the learning rate")
    plateau_patience: int = option(2, "lr_schedule plateau: epochs without improvement before a cut")
    adam_eps: float = option(1e-8, "epsilon of Adam (Burda et al. 2015 used 1e-4)")
    weight_decay: float = option(0.0, "L2 penalty on the weights, the paper's Gaussian prior on them")
    estimator: Estimator = option("analytic", "SGVB estimator: B (analytic KL) or A ('mc', all Monte Carlo)")
    samples: int = option(1, "L, samples of z per data point (k of the iwae objective)")
    beta: float = option(1.0, "weight of the KL term: 1 is the ELBO, >1 a beta-VAE")
    objective: str = option("elbo", "training objective (iwae: the k-sample bound of Burda et al.)")
    warmup_steps: int = option(0, "KL warm-up: steps over which beta rises linearly from 0 (0: off)")
    free_bits: float = option(0.0, "per-dimension floor on the batch-mean KL, nats (Kingma et al. 2016)")
    binarize: Binarize = option(
        "none", "Bernoulli targets: grey levels, one fixed draw, a new draw per epoch"
    )
    seed: int = option(0, "seeds weights, data order, eps, binarization and the held-out splits")
    verbose: bool = option(False, "show a progress bar with the running ELBO", flag=False)
    device: Device = option("cpu", "where data and model live while training ('auto': cuda if available)")
    compile: bool = option(False, "torch.compile the objective (CUDA graphs on a GPU)")
    precision: Precision = option(
        "float32", "bf16: autocast the networks to bfloat16 (CUDA only; numbers in float32)"
    )
    checkpoint_every: int = option(500, "optimiser steps between checkpoints of a run folder (0: epoch ends)")
    validation: float = option(0.0, "fraction of the training rows held out to validate each epoch (0: none)")
    patience: int = option(
        0, "early stopping: epochs without a better validation ELBO, then stop and keep the best (0: off)"
    )

    def __post_init__(self) -> None:
        limits.check_config(self)
        _check_fields(self)
        _check_positive(self, "epochs", "batch_size", "lr", "samples", "adam_eps")
        if not 0 <= self.seed < MAX_SEED:
            raise VaekitError(f"seed must be in [0, 2**62), got {self.seed!r}")
        if self.checkpoint_every < 0:
            raise VaekitError(f"checkpoint_every must be non-negative, got {self.checkpoint_every!r}")
        if self.weight_decay < 0 or self.beta < 0:
            raise VaekitError("weight_decay and beta must be non-negative")
        if self.warmup_steps < 0 or self.free_bits < 0:
            raise VaekitError("warmup_steps and free_bits must be non-negative")
        problem = OBJECTIVES[self.objective].check(self) or check_stopping(self)
        if problem:
            raise VaekitError(problem)

    @property
    def length_dependent(self) -> bool:
        """Whether the learning rate of a step depends on ``epochs`` (the run cannot be extended)."""
        return LR_SCHEDULES[self.lr_schedule].length_dependent


#: what a saved model's config that predates a field means by it: the behaviour it was trained with
#: (a run of vaekit before standardization trained on raw columns)
BEFORE_FIELD = {"standardize": "off"}


def with_old_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Saved constructor arguments ``params``, with the fields they predate as :data:`BEFORE_FIELD` says."""
    return {**BEFORE_FIELD, **params}


def split_params(params: dict[str, object]) -> tuple[ModelConfig, TrainConfig]:
    """Sort flat estimator parameters into the two configs (validating both)."""
    model_keys = {f.name for f in fields(ModelConfig)}
    model = {k: v for k, v in params.items() if k in model_keys}
    train = {k: v for k, v in params.items() if k not in model_keys}
    for name in ModelConfig.WIDTHS:
        if isinstance(model.get(name), list):
            model[name] = tuple(model[name])  # type: ignore[arg-type]
    return ModelConfig(**model), TrainConfig(**train)  # type: ignore[arg-type]
