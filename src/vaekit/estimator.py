"""The scikit-learn style estimator :class:`VAE`: composes module, likelihood, objective and trainer."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit import __version__, checkpoint, inputs, runs, scaling, stopping, storage
from vaekit.conditions import as_condition, check_setup, condition_setup
from vaekit.config import (
    EVAL_BINARIZATION_SEED,
    SAMPLE_SEED,
    STATIC_BINARIZATION_SEED,
    VALIDATION_SEED,
    Binarize,
    Device,
    Estimator,
    ModelConfig,
    Standardize,
    TrainConfig,
    split_params,
)
from vaekit.data import binarize, check_array, float_rows
from vaekit.errors import VaekitError
from vaekit.evaluate import elbo_summary, evaluate, importance_log_likelihood, module_device
from vaekit.hierarchy import make_module
from vaekit.inputs import ArrayLike
from vaekit.likelihoods import make_likelihood
from vaekit.networks import VAEModule
from vaekit.objectives import ELBOTerms, elbo
from vaekit.precision import Precision
from vaekit.sklearn_compat import Transformer, not_fitted
from vaekit.train import Trainer

M, T = ModelConfig, TrainConfig  # the defaults below are read from the configs, set there once


class VAE(Transformer):
    """Variational autoencoder (Kingma & Welling, Auto-Encoding Variational Bayes).

    The constructor only stores its arguments (see :class:`~vaekit.config.ModelConfig`
    and :class:`~vaekit.config.TrainConfig` for their meaning); :meth:`fit` builds
    ``module_`` (a :class:`torch.nn.Module`) and sets ``history_``,
    ``n_features_in_``, ``image_shape_``, and ``best_epoch_`` (the epoch of the best validation
    ELBO, None without a ``validation`` split) and ``stopped_early_``.

    Arrays given to the methods are ``(n, d)`` rows, or ``(n, H, W)`` /
    ``(n, H, W, C)`` images that are flattened; 8-bit arrays are scaled to [0, 1].
    Outputs are float32 numpy arrays. A Gaussian model of data that are not images
    standardizes each column inside (``standardize``, :mod:`vaekit.scaling`): inputs and outputs
    stay in the data's units, and log-likelihoods are of the data as given.

    Examples
    --------
    >>> vae = VAE(latent_dim=20, hidden=(400,), likelihood="bernoulli").fit(X_train)
    >>> Z = vae.transform(X)  # (n, 20) posterior means
    >>> cvae = VAE(conditional=True).fit(X_train, y_train)  # labels (n,) or vectors (n, c)
    >>> sevens = cvae.sample(16, y=7)  # (16, d) decoder means given the label 7
    """

    def __init__(
        self,
        latent_dim: int = M.latent_dim,
        hidden: tuple[int, ...] = M.hidden,
        activation: str = M.activation,
        likelihood: str = M.likelihood,
        likelihood_options: dict[str, float] | None = M.likelihood_options,
        conditional: bool = M.conditional,
        arch: str = M.arch,
        arch_options: dict[str, Any] | None = M.arch_options,
        standardize: Standardize = M.standardize,
        upper_latents: tuple[int, ...] = M.upper_latents,
        upper_hidden: tuple[int, ...] = M.upper_hidden,
        prior: str = M.prior,
        prior_options: dict[str, Any] | None = M.prior_options,
        epochs: int = T.epochs,
        batch_size: int = T.batch_size,
        optimizer: str = T.optimizer,
        lr: float = T.lr,
        lr_schedule: str = T.lr_schedule,
        adam_eps: float = T.adam_eps,
        weight_decay: float = T.weight_decay,
        estimator: Estimator = T.estimator,
        samples: int = T.samples,
        beta: float = T.beta,
        objective: str = T.objective,
        warmup_steps: int = T.warmup_steps,
        free_bits: float = T.free_bits,
        binarize: Binarize = T.binarize,
        seed: int = T.seed,
        verbose: bool = T.verbose,
        device: Device = T.device,
        compile: bool = T.compile,
        precision: Precision = T.precision,
        checkpoint_every: int = T.checkpoint_every,
        validation: float = T.validation,
        patience: int = T.patience,
        plateau_factor: float = T.plateau_factor,
        plateau_patience: int = T.plateau_patience,
    ) -> None:
        for name, value in list(locals().items()):  # each argument stored under its own name
            if name != "self":
                setattr(self, name, value)

    # ------------------------------------------------------------------ arguments

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """The arguments as validated configs (VaekitError naming a bad one)."""
        return split_params(self.get_params())

    # ------------------------------------------------------------------ data

    def check_data(
        self, X: ArrayLike, y: ArrayLike | None = None, what: str = "X", new_fit: bool = False
    ) -> Tensor:
        """X as ``(n, d)`` float32 rows fit for this model: in the likelihood's support, in [0, 1]
        when binarizing, of the fitted width; VaekitError otherwise.

        new_fit : check for a new fit (the arguments' likelihood, any width, the conditions y)
            instead of against the fitted model
        """
        if what == "X":  # a data frame's column names, recorded by a fit (scikit-learn)
            self.check_feature_names(X, reset=new_fit)
        fitted = None if new_fit else getattr(self, "module_", None)
        if fitted is not None:
            return inputs.data_rows(X, what, fitted.likelihood, self.binarize, self.n_features_in_)
        likelihood = make_likelihood(self.likelihood, self.likelihood_options)
        rows = inputs.data_rows(X, what, likelihood, self.binarize)
        if new_fit:
            self._condition_setup(y)
        return rows

    def eval_targets(self, X: ArrayLike, what: str = "X") -> Tensor:
        """Held-out rows as training saw them: binarized once (seed + EVAL_BINARIZATION_SEED)
        when training binarizes, else as given."""
        x = self.check_data(X, what=what)
        if self.binarize == "none":
            return x
        return binarize(x, torch.Generator().manual_seed(self.seed + EVAL_BINARIZATION_SEED))

    def _check_fitted(self) -> VAEModule:
        if not hasattr(self, "module_"):
            raise not_fitted()
        return self.module_

    def _cond(self, y: ArrayLike | int | None, n: int, what: str = "y") -> Tensor | None:
        """The condition ``(n, c)`` of a conditional model (None for an unconditional one)."""
        if not self._check_fitted().cond_dim:  # as fitted (set_params changes the next fit only)
            return None
        cond = as_condition(y, n, self.module_.cond_dim, self.n_classes_, what)
        return cond.to(module_device(self.module_))

    def _condition_setup(self, y: ArrayLike | None) -> tuple[int, int | None]:
        """(cond_dim, n_classes) of the training conditions y; (0, None) when not conditional."""
        if not self.conditional:
            return 0, None
        if y is None:
            raise VaekitError("y: this VAE is conditional; fitting needs labels or condition vectors")
        return condition_setup(y)

    def _build(
        self,
        n_features: int,
        image_shape: tuple[int, ...] | None,
        cond: tuple[int, int | None],
        standardized: bool = False,
        x: Tensor | None = None,
    ) -> None:
        """Create ``module_`` and the trainer; ``cond`` is the condition setup (cond_dim, n_classes);
        ``standardized``: whether the model standardizes its columns (:mod:`vaekit.scaling`),
        taking their mean and scale from the training rows x."""
        model_cfg, train_cfg = self.configs()
        shape = inputs.check_image_shape(image_shape, n_features)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_cfg.seed)
            self.module_ = make_module(n_features, scaling.decided(model_cfg, standardized), cond[0], shape)
        if self.module_.scaler is not None and x is not None:
            self.module_.scaler.fit(x)
        self._built_with = self.get_params()  # what the run's config records for this model
        self.n_classes_, self.n_features_in_, self.image_shape_ = cond[1], n_features, shape
        self.trainer_ = Trainer(self.module_, train_cfg)
        self.history_: list[dict[str, float]] = []
        self.source_: dict[str, Any] | None = None

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        *,
        X_test: ArrayLike | None = None,
        y_test: ArrayLike | None = None,
        image_shape: tuple[int, ...] | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        source: dict[str, Any] | None = None,
    ) -> VAE:
        """Train from scratch on X for ``epochs`` epochs, or resume a checkpointed run. Returns self.

        y : ignored, unless ``conditional``: class labels ``(n,)`` (one-hot encoded) or
            condition vectors ``(n, c)``
        X_test, y_test : optional held-out rows (and conditions); each epoch's metrics then include its ELBO
            (test_elbo, ...). With ``validation`` a seeded fraction of X is held out instead of
            trained on (:func:`vaekit.stopping.hold_out`); each epoch's metrics include its ELBO
            (val_elbo, ...) and best_epoch, and with ``patience`` training stops once it has not
            improved for that many epochs, the model keeping the best epoch's weights.
        image_shape : (C, H, W) of the rows, for pictures; inferred from 3-D/4-D X
        on_epoch_end : called with each epoch's metrics (a dict of floats)
        checkpoint_dir : a run folder (:class:`vaekit.runs.Run`); its config is written there
            first, then a checkpoint every ``checkpoint_every`` steps and after each
            epoch. Ctrl-C then stops after the current step, saves a checkpoint and raises
            KeyboardInterrupt.
        resume : continue from the checkpoint in ``checkpoint_dir`` (from the start if there is
            none yet); given the same X, the result equals an uninterrupted fit bit for bit. With
            more ``epochs`` than the checkpointed run (and a schedule that does not depend on the
            run's length) a finished run is extended, equal to a run of that many epochs.
        source : where X came from (JSON-able), recorded in the model's config
        """
        if resume and checkpoint_dir is None:
            raise VaekitError("resume=True needs the checkpoint_dir of the run to resume")
        self.configs()  # the arguments first: check_data uses the likelihood
        x = self.check_data(X, y, new_fit=True)
        shape = image_shape or inputs.image_shape_of(X)
        standardized = scaling.applies(self.configs()[0], images=shape is not None)
        self._build(x.shape[1], shape, self._condition_setup(y), standardized, x)
        self.source_ = source
        cond = self._cond(y, len(x))
        validate = None
        if self.validation:  # a seeded part of X is held out, not trained on
            split = torch.Generator().manual_seed(self.seed + VALIDATION_SEED)
            binarized = self.binarize != "none"
            x, cond, x_val, cond_val = stopping.hold_out(x, cond, self.validation, split, binarized, "X")
            held = {"rows": len(x_val), "sha256": runs.digest(x_val)}
            self.source_ = {**(source or {}), "validation": held}  # the run's data record
            validate = partial(self._held_out_summary, x_val, cond_val, "validation")
        if self.binarize == "static":
            x = binarize(x, torch.Generator().manual_seed(self.seed + STATIC_BINARIZATION_SEED))
        x_test = self.eval_targets(X_test, "X_test") if X_test is not None else None
        cond_test = self._cond(y_test, len(x_test), "y_test") if x_test is not None else None

        def record(row: dict[str, float]) -> None:
            if x_test is not None:
                test = self._held_out_summary(x_test, cond_test, "test")
                row.update({f"test_{k}": v for k, v in test.items()})
            self.history_.append(row)
            if on_epoch_end is not None:
                on_epoch_end(row)

        save = runs.Run(checkpoint_dir).checkpointing(self, resume) if checkpoint_dir is not None else None
        with checkpoint.stop_on_sigint(self.trainer_) if save else nullcontext():
            self.trainer_.fit(x, cond, on_epoch_end=record, on_checkpoint=save, validate=validate)
        monitor = self.trainer_.monitor
        self.best_epoch_ = monitor.best_epoch if self.validation else None
        self.stopped_early_ = monitor.stopped
        return self

    def _held_out_summary(self, x: Tensor, y: Tensor | None, what: str) -> dict[str, float | None]:
        """:func:`vaekit.evaluate.elbo_summary` of held-out rows after an epoch; VaekitError if not finite."""
        found = elbo_summary(self.module_, x, y, self.samples, self.estimator, self.seed)
        if not np.isfinite(found["elbo"]):  # finite weights so large that the ELBO overflows
            raise VaekitError(
                f"training diverged in epoch {self.trainer_.epoch}: the {what} ELBO is "
                f"{found['elbo']}; try a lower learning rate than {self.lr:g}"
            )
        return found

    def partial_fit(self, X: ArrayLike, y: ArrayLike | None = None, classes: ArrayLike | None = None) -> VAE:
        """One optimisation step on the batch X (initialising the model on first use). Returns self.

        classes : every class label of a label-conditional model, on the first call (as in
            scikit-learn), when the first batch does not hold the highest one; ignored afterwards

        A standardizing model (``standardize``, :mod:`vaekit.scaling`) takes its columns' mean and
        scale from the first batch.
        """
        self.configs()
        if self.binarize == "static":  # one fixed draw per example needs the whole data set: fit()
            raise VaekitError(
                "partial_fit cannot binarize='static' (one fixed draw per example of the "
                "whole data set); use binarize='dynamic', or binarize X yourself"
            )
        x = self.check_data(X, y, new_fit=not hasattr(self, "module_"))
        if not hasattr(self, "module_"):
            cond = self._condition_setup(y)
            if classes is not None and cond[1] is not None:
                cond = self._condition_setup(classes)  # labels: K = max(classes) + 1 one-hot columns
            shape = inputs.image_shape_of(X)
            standardized = scaling.applies(self.configs()[0], images=shape is not None)
            self._build(x.shape[1], shape, cond, standardized, x)
        self.trainer_.train_step(x, self._cond(y, len(x)))
        return self

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def transform(self, X: ArrayLike, y: ArrayLike | None = None) -> np.ndarray:
        """Posterior means E_q[z|x] (E_q[z|x, y] when conditional): ``(n, latent_dim)``."""
        module = self._check_fitted().eval()
        x = self.check_data(X)
        z = module.encode(x.to(module_device(module)), self._cond(y, len(x)))[0].cpu().numpy()
        return self.wrap_output(z, X)  # numpy, or the data frame set_output asks for

    @torch.no_grad()
    def inverse_transform(
        self, Z: ArrayLike, y: ArrayLike | int | None = None, mean: bool = True, seed: int = 0
    ) -> np.ndarray:
        """Decoder means E[x|z] (E[x|z, y]) for given latents Z ``(n, latent_dim)``: ``(n, d)``.

        mean : False draws x ~ p(x|z) instead (:meth:`Likelihood.sample`, generator seeded by ``seed``)
        """
        module = self._check_fitted().eval()
        z = inputs.array(Z, "Z")
        if z.ndim != 2 or z.shape[1] != module.latent_dim or len(z) == 0:
            raise VaekitError(f"Z: expected latents of shape (n, {module.latent_dim}), got {z.shape}")
        check_array(z, "Z")
        rows = float_rows(z, "Z").to(module_device(module))  # float32, finite
        params = module.decode(rows, self._cond(y, len(rows)))
        if mean:
            return module.likelihood.mean(params).cpu().numpy()
        gen = torch.Generator(module_device(module)).manual_seed(inputs.seed(seed))
        return module.likelihood.sample(params, gen).cpu().numpy()

    def reconstruct(self, X: ArrayLike, y: ArrayLike | None = None) -> np.ndarray:
        """Decoder means of the encoded inputs' posterior means: ``(n, d)``."""
        return self.inverse_transform(self.transform(X, y), y)

    def sample(
        self, n: int, seed: int | None = None, y: ArrayLike | int | None = None, mean: bool = True
    ) -> np.ndarray:
        """Decoder means for n draws z ~ p(z) from the prior: ``(n, d)`` (ancestral through the layers).

        seed : reproduces the draws; None (default): each call draws new ones (the model's
            seed and the number of earlier calls seed them, so a saved model's sequence repeats)
        y : the condition of a conditional model: one label for all n, or ``(n,)`` labels / ``(n, c)`` vectors
        mean : False draws the pixels too, x ~ p(x|z) (e.g. 0/1 pixels of a Bernoulli decoder)
        """
        module = self._check_fitted()
        if seed is None:
            calls = self.__dict__.get("_sample_calls", 0)
            self._sample_calls = calls + 1
            seed = int(
                np.random.SeedSequence([self.seed, SAMPLE_SEED, calls]).generate_state(1, np.uint64)[0] >> 2
            )
        seed = inputs.seed(seed)
        z = module.sample_latent(inputs.count(n, "n"), torch.Generator().manual_seed(seed))
        return self.inverse_transform(z, y, mean=mean, seed=seed)

    def score(self, X: ArrayLike, y: ArrayLike | None = None) -> float:
        """Mean ELBO per example on X, in nats (higher is better)."""
        module = self._check_fitted()
        x = self.check_data(X)
        return elbo_summary(module, x, self._cond(y, len(x)), self.samples, self.estimator, self.seed)["elbo"]

    def score_samples(
        self, X: ArrayLike, k: int = 5000, seed: int = 0, y: ArrayLike | None = None, progress: bool = False
    ) -> np.ndarray:
        """Importance-sampled log p(x) per example with k samples (Burda et al. 2015): ``(n,)`` nats.

        progress : show a progress bar over the examples (on stderr)
        """
        module = self._check_fitted()
        x = self.check_data(X)
        cond = self._cond(y, len(x))
        k, seed = inputs.count(k, "k"), inputs.seed(seed)
        return importance_log_likelihood(module, x, cond, k, seed, progress=progress).numpy()

    def evaluate(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        k: int = 5000,
        progress: bool = False,
        run: str | Path | None = None,
        levels: int | None = None,
    ) -> dict[str, Any]:
        """Everything ``vaekit eval`` reports on held-out X (:func:`vaekit.evaluate.evaluate`), per
        example, in nats; X is binarized as :meth:`eval_targets` says.

        run : the model's run folder: a long evaluation there keeps its finished examples and
            resumes after a kill (:meth:`vaekit.runs.Run.importance_estimates`)
        levels : the values each dimension of X was stored with (256: 8-bit), for a code length of
            a density; ignored when training binarizes (the targets are then 0/1 draws)
        """
        module = self._check_fitted()
        x = self.eval_targets(X)
        cond, k = self._cond(y, len(x)), inputs.count(k, "k")
        ks = (k, max(1, k // 10))  # the estimate and its convergence check, from the same draws
        estimates = (
            runs.Run(run).importance_estimates(module, x, cond, ks, self.seed, progress) if run else None
        )
        levels = levels if self.binarize == "none" else None
        result = evaluate(
            module,
            x,
            k,
            self.samples,
            self.estimator,
            self.seed,
            cond,
            progress,
            levels=levels,
            estimates=estimates,
        )
        seed = self.seed + EVAL_BINARIZATION_SEED if self.binarize != "none" else None
        return {"binarization_seed": seed, **result}

    def elbo_terms(self, X: ArrayLike, y: ArrayLike | None = None) -> ELBOTerms:
        """Per-example ELBO terms (reconstruction and KL, nats) on X, without gradients."""
        module = self._check_fitted().eval()
        x = self.check_data(X).to(module_device(module))
        with torch.no_grad():
            terms = elbo(module, x, self._cond(y, len(x)), self.samples, self.estimator)
        return ELBOTerms(terms.recon.cpu(), terms.kl.cpu())

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | Path) -> None:
        """Write the config (arguments, shapes, version) and the weights to folder (:mod:`vaekit.runs`)."""
        runs.Run(folder).write_model(self._check_fitted().state_dict(), self.config_record())

    def config_record(self) -> dict[str, Any]:
        """The model's config (:data:`vaekit.runs.CONFIG`): arguments, shapes, conditions, version, data."""
        # the arguments the model was built with: set_params after fit changes only the next fit
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in self._built_with.items()}
        shape = list(self.image_shape_) if self.image_shape_ else None
        record = {
            "vaekit_version": __version__,
            "params": {**params, **{k: [int(h) for h in params[k]] for k in M.WIDTHS}},
        }
        record.update(n_features_in=self.n_features_in_, image_shape=shape, cond_dim=self.module_.cond_dim)
        record.update(standardized=self.module_.scaler is not None)
        record.update(
            n_classes=self.n_classes_, **({"source": self.source_} if self.source_ is not None else {})
        )
        return record

    @classmethod
    def load(cls, folder: str | Path) -> VAE:
        """Rebuild a saved VAE from the config and weights in folder (see :meth:`save`)."""
        run = runs.Run.existing(folder, what="model folder")
        model = run.read_model_config()
        try:
            vae = cls(**model.params)
            check_setup(model.cond, vae.conditional)
            vae._build(model.n_features_in, model.image_shape, model.cond, model.standardized)
        except (TypeError, ValueError, VaekitError) as e:
            raise VaekitError(f"{run.path(runs.CONFIG)}: not a vaekit model config ({e})") from e
        vae.source_ = model.source
        storage.load_state(vae.module_, run.read_weights(), run.path(runs.WEIGHTS), run.path(runs.CONFIG))
        return vae
